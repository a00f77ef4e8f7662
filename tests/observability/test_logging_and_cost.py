"""Run context in log records, and no OpenTelemetry import (or reporting) without it."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowstate import END, START, GraphBuilder
from flowstate.observability import RunContextFilter, log_context

from .conftest import rec
from .graphs import Chain, flaky_graph


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RunContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def capture() -> object:
    h = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(h)
    root.setLevel(logging.DEBUG)
    try:
        yield h
    finally:
        root.removeHandler(h)
        root.setLevel(old)


def test_every_record_carries_run_step_and_node(capture: Capture, tmp_path: Path):
    user_log = logging.getLogger("my.agent")

    def first(s: Chain) -> dict:
        user_log.info("in first")  # a sync node: runs in a worker thread
        return {"n": 1}

    async def second(s: Chain) -> dict:
        user_log.info("in second")
        return {"n": 2}

    g = GraphBuilder(Chain, name="logged")
    g.add_node(first).add_node(second)
    g.add_edge(START, "first").add_edge("first", "second").add_edge("second", END)
    r = g.compile(store=str(tmp_path / "a.db")).run_sync({}, run_id="L1")
    assert r.status == "completed"
    mine = {r.getMessage(): r for r in capture.records if r.name == "my.agent"}
    where = [tuple(rec(mine[m], k) for k in ("run_id", "step", "node")) for m in mine]
    assert where == [("L1", 0, "first"), ("L1", 1, "second")]
    engine = [r for r in capture.records if r.name == "flowstate.engine"]
    assert any("run L1 completed" in r.getMessage() for r in engine)
    assert all(rec(r, "run_id") == "L1" for r in engine)
    assert log_context() is None, "nothing leaks out of the run"


def test_retry_warning_names_the_run_and_node(capture: Capture, tmp_path: Path):
    app = flaky_graph(fail_times=1).compile(store=str(tmp_path / "a.db"))
    app.run_sync({}, run_id="F1")
    warn = [
        r for r in capture.records if r.levelno == logging.WARNING and r.name == "flowstate.engine"
    ]
    assert len(warn) == 1
    assert "retrying" in warn[0].getMessage() and "ConnectionError" in warn[0].getMessage()
    assert (rec(warn[0], "run_id"), rec(warn[0], "step"), rec(warn[0], "node")) == (
        "F1",
        0,
        "flaky",
    )


def test_filter_keeps_fields_a_record_already_has():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.__dict__["run_id"] = "mine"
    assert RunContextFilter().filter(record)
    assert rec(record, "run_id") == "mine" and rec(record, "node") is None


def _run_child(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_flowstate_never_imports_opentelemetry_itself(tmp_path: Path):
    out = _run_child(
        f"""
        import sys
        from pydantic import BaseModel
        from flowstate import END, START, GraphBuilder
        class S(BaseModel):
            n: int = 0
        def inc(s: S) -> dict:
            return {{"n": s.n + 1}}
        g = GraphBuilder(S, name="plain")
        g.add_node(inc).add_edge(START, "inc").add_edge("inc", END)
        r = g.compile(store={str(tmp_path / "a.db")!r}).run_sync({{}})
        print(r.status, sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert out == "completed []"


def test_without_opentelemetry_everything_runs(tmp_path: Path):
    """OpenTelemetry made unimportable: a graph with a subgraph, an interrupt and a resume
    runs, even with ``configure(enabled=True)``, and stores no trace context. (The
    ``anthropic`` SDK itself needs ``opentelemetry-api`` since 2.x, so an LLM graph
    cannot be run this way.)"""
    out = _run_child(
        f"""
        import json, sys
        class NoOtel:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError("not installed")
        sys.meta_path.insert(0, NoOtel())
        import flowstate.observability as fo
        fo.configure(enabled=True)
        from tests.composition.graphs import nested
        app = nested(2).compile(store={str(tmp_path / "a.db")!r})
        r = app.run_sync({{}})
        cfg = json.loads(app.store.get_run(r.run_id).config)
        mods = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(r.status, mods, "trace" in cfg)
        """
    )
    assert out == "completed [] False"


def test_reports_only_with_a_provider_and_not_when_disabled(tmp_path: Path):
    """OpenTelemetry imported (the anthropic SDK imports it) but no provider: nothing is
    reported; a provider set: the run's trace context is stored; ``enabled=False``: nothing,
    even with the provider."""
    out = _run_child(
        f"""
        import json, sys
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        import flowstate.observability as fo
        from tests.observability.graphs import agent_graph, agent_services
        app = agent_graph().compile(store={str(tmp_path / "a.db")!r})
        def traced():
            agent_services(app)
            r = app.run_sync({{"items": [1]}})
            assert r.status == "completed", r
            return "trace" in json.loads(app.store.get_run(r.run_id).config)
        print(traced())
        trace.set_tracer_provider(TracerProvider())
        print(traced())
        fo.configure(enabled=False)
        print(traced())
        """
    )
    assert out.split() == ["False", "True", "False"]


def test_a_subgraphs_events_are_logged_once(capture: Capture, tmp_path: Path):
    from tests.composition.graphs import nested

    nested(2).compile(store=str(tmp_path / "n.db")).run_sync({}, run_id="N1")
    finished = [
        r.getMessage()
        for r in capture.records
        if r.name == "flowstate.engine" and "completed" in r.getMessage()
    ]
    assert sorted(finished) == ["run N1 completed", "run N1/1/sub2 completed"]
