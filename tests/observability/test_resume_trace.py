"""A resumed run continues its trace; replays and forks get their own, linked to it; a run
killed with SIGKILL and resumed by another process reads as one trace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext

from .conftest import Telemetry, attrs, sc, sc_link

HERE = Path(__file__).resolve().parent


class Q(BaseModel):
    answer: str = ""
    done: bool = False


def interview() -> GraphBuilder[Q]:
    async def ask(s: Q, ctx: NodeContext) -> dict:
        return {"answer": await ctx.interrupt("name?")}

    def finish(s: Q) -> dict:
        return {"done": True}

    g = GraphBuilder(Q, name="interview")
    g.add_node(ask).add_node(finish)
    g.add_edge(START, "ask").add_edge("ask", "finish").add_edge("finish", END)
    return g


def test_resume_continues_the_trace_and_replay_and_fork_link_to_it(otel: Telemetry, tmp_path: Path):
    app = interview().compile(store=str(tmp_path / "runs.db"))
    r = app.run_sync({}, run_id="q1")
    assert r.status == "paused"
    first = otel.one("flowstate.run interview")
    assert attrs(first)["flowstate.run.status"] == "paused"
    asked = otel.one("flowstate.node ask")
    assert attrs(asked)["flowstate.outcome"] == "interrupted"
    otel.exporter.clear()

    assert app.resume_sync("q1", value="Ada").status == "completed"
    second = otel.one("flowstate.run interview")
    assert sc(second).trace_id == sc(first).trace_id
    assert second.parent is not None and second.parent.span_id == sc(first).span_id
    assert attrs(second)["flowstate.run.kind"] == "resume"
    assert attrs(second)["flowstate.run.start_step"] == 0
    assert attrs(second)["flowstate.run.took_over"] is False, "it was paused, not dead"
    assert otel.total("flowstate.lease.takeovers") == 0
    for node in ("ask", "finish"):
        span = otel.one(f"flowstate.node {node}")
        assert sc(span).trace_id == sc(first).trace_id
        assert span.parent is not None and span.parent.span_id == sc(second).span_id
    otel.exporter.clear()

    report = asyncio.run(app.replay("q1"))
    assert report.identical
    replay = otel.one("flowstate.run interview")
    assert attrs(replay)["flowstate.run.kind"] == "replay"
    assert sc(replay).trace_id != sc(first).trace_id
    assert replay.parent is None
    assert [(sc_link(lk).trace_id, sc_link(lk).span_id) for lk in replay.links] == [
        (sc(first).trace_id, sc(first).span_id)
    ]
    assert dict(replay.links[0].attributes or {})["flowstate.link"] == "replay_of"
    otel.exporter.clear()

    forked = asyncio.run(app.fork("q1", at=1, update={"answer": "Grace"}, new_run_id="q2"))
    assert forked.status == "completed"
    fork = otel.one("flowstate.run interview")
    assert attrs(fork)["flowstate.run.kind"] == "fork"
    assert sc(fork).trace_id != sc(first).trace_id
    assert sc_link(fork.links[0]).span_id == sc(first).span_id
    stored = json.loads(app.store.get_run("q2").config)["trace"]["traceparent"]
    assert f"{sc(fork).span_id:016x}" in stored


def _spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _child(db: Path, spans: Path) -> list[str]:
    return [sys.executable, str(HERE / "otel_child.py"), str(db), "k1", str(spans)]


def test_killed_and_resumed_run_is_one_trace(tmp_path: Path):
    """A real process runs a chain with a tracer provider exporting each span as it ends,
    is killed with SIGKILL mid-run; another process resumes it. The two processes' spans
    share one trace; the resumed segment hangs from the run's first span, after a gap."""
    db, spans = tmp_path / "runs.db", tmp_path / "spans.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(_child(db, spans), env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [s for s in _spans(spans) if s["name"].startswith("flowstate.node")]
            if len(done) >= 3:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the child never committed 3 activations")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = _spans(spans)
    assert all(s["name"] != "flowstate.run slow_chain" for s in killed), "it never ended"
    with sqlite3.connect(db) as c:
        (config,) = c.execute("SELECT config FROM runs WHERE id = 'k1'").fetchone()
        (status,) = c.execute("SELECT status FROM runs WHERE id = 'k1'").fetchone()
    assert status == "running"
    _, trace_id, first_span, _ = json.loads(config)["trace"]["traceparent"].split("-")
    time.sleep(0.3)  # the gap

    out = subprocess.run(_child(db, spans), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("completed")
    every = _spans(spans)
    assert {s["trace_id"] for s in every} == {trace_id}, "one trace across both processes"
    first_nodes = [s for s in killed if s["name"].startswith("flowstate.node")]
    assert {s["parent_id"] for s in first_nodes} == {first_span}
    resumed = [s for s in every if s["name"] == "flowstate.run slow_chain"]
    assert len(resumed) == 1
    seg = resumed[0]
    assert seg["parent_id"] == first_span
    assert seg["attributes"]["flowstate.run.kind"] == "resume"
    assert seg["attributes"]["flowstate.run.status"] == "completed"
    assert seg["attributes"]["flowstate.run.took_over"] is True, "it recovered a dead run"
    later = [s for s in every if s["parent_id"] == seg["span_id"]]
    steps = sorted(s["attributes"]["flowstate.step"] for s in later)
    done_steps = sorted(s["attributes"]["flowstate.step"] for s in first_nodes)
    # the killed activation runs again, nothing committed runs twice, no step is missing
    assert sorted(set(done_steps) | set(steps)) == list(range(8))
    assert not set(done_steps) & set(steps)
    gap = seg["start"] - max(s["end"] for s in first_nodes)
    assert gap >= 0.3e9, "the time the run was down shows as a gap"


def test_a_crash_in_process_ends_the_spans_and_the_resume_counts_a_takeover(
    otel: Telemetry, tmp_path: Path
):
    import pytest

    from tests.conftest import CrashingStore, SimulatedCrash

    from .graphs import slow_chain

    g = slow_chain(4, 0.0)
    crashing = g.compile(store=CrashingStore(tmp_path / "c.db", crash_after=2))
    with pytest.raises(SimulatedCrash):
        crashing.run_sync({}, run_id="c1")
    first = otel.one("flowstate.run slow_chain")
    assert attrs(first)["flowstate.run.status"] == "crashed"
    assert first.status.status_code == StatusCode.ERROR
    otel.exporter.clear()

    app = g.compile(store=str(tmp_path / "c.db"))
    assert app.resume_sync("c1").status == "completed"
    second = otel.one("flowstate.run slow_chain")
    assert second.parent is not None and second.parent.span_id == sc(first).span_id
    assert attrs(second)["flowstate.run.took_over"] is True
    assert otel.total("flowstate.lease.takeovers", **{"flowstate.graph": "slow_chain"}) == 1
    assert sorted(attrs(s)["flowstate.step"] for s in otel.named("flowstate.node")) == [2, 3]


def test_service_admission_then_execution_is_one_trace(otel: Telemetry, tmp_path: Path):
    """The task service admits a run by stopping the engine at ``create_run``, stores the
    rows as ``queued`` and executes them later: the admission span ends as not started
    (no error), and the execution continues its trace."""
    from flowstate.service._service import admission_rows

    app = interview().compile(store=str(tmp_path / "s.db"))
    run, step0 = asyncio.run(admission_rows(app, Q(), "s1", None))
    admitted = otel.one("flowstate.run interview")
    assert attrs(admitted)["flowstate.run.status"] == "not_started"
    assert admitted.status.status_code != StatusCode.ERROR
    assert "flowstate.node" not in {s.name.split(" ")[0] for s in otel.spans()}
    app.store.create_run(run, step0)
    otel.exporter.clear()
    assert app.resume_sync("s1").status == "paused"
    seg = otel.one("flowstate.run interview")
    assert sc(seg).trace_id == sc(admitted).trace_id
    assert seg.parent is not None and seg.parent.span_id == sc(admitted).span_id
