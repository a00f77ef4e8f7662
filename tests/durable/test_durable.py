"""Effects journal, interrupts, breakpoints, pause, replay, fork, testing helpers."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from flowstate import END, START, GraphBuilder, NodeContext, ReplayDivergence
from flowstate.cli import app as cli
from flowstate.errors import EffectError, NodeFailed
from flowstate.testing import assert_replays, assert_resumable
from tests.durable.graphs import LIVE, VARIANT, research_graph


@pytest.fixture(autouse=True)
def _reset():
    LIVE.update({"raise": False, "calls": 0})
    VARIANT["summarise_prefix"] = "about"
    yield
    LIVE.update({"raise": False, "calls": 0})
    VARIANT["summarise_prefix"] = "about"


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection attempt fails the test (RELIABILITY.md R12)."""
    attempts: list = []

    def guard(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network connection attempted during replay: {args}")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    return attempts


def run_to_end(app, run_id="r"):
    r = app.run_sync({"topic": "durable agents"}, run_id=run_id)
    assert r.status == "paused" and [i.payload for i in r.interrupts] == [
        {"question": "approve?", "summary": r.state.summary}
    ]
    r = app.resume_sync(run_id, value=True)
    assert r.status == "paused" and [i.payload for i in r.interrupts] == [{"question": "really?"}]
    r = app.resume_sync(run_id, value="yes")
    assert r.status == "completed"
    return r


def test_interrupts_pause_and_are_answered_in_order(tmp_path):
    app = research_graph().compile(store=str(tmp_path / "x.db"))
    r = run_to_end(app)
    assert r.state.approved and r.state.notes[-2:] == ["answers=True,yes", "published"]
    # earlier effects were served from the journal on every resume: 2 live calls in all
    assert LIVE["calls"] == 2
    assert app.get_run("r").status == "completed"


def test_paused_run_is_listed_with_its_payload(tmp_path):
    db = str(tmp_path / "x.db")
    app = research_graph().compile(store=db)
    app.run_sync({"topic": "t"}, run_id="p1")
    out = CliRunner().invoke(cli, ["runs", "--db", db])
    assert "paused" in out.output
    row = json.loads(CliRunner().invoke(cli, ["runs", "--db", db, "--json"]).output)
    assert row["status"] == "paused" and row["waiting_for"][0]["question"] == "approve?"
    out = CliRunner().invoke(cli, ["show", "p1", "--db", db])
    assert "waiting for input" in out.output and "approve?" in out.output
    out = CliRunner().invoke(
        cli,
        [
            "resume",
            "p1",
            "--db",
            db,
            "--graph",
            "tests.durable.graphs:research_graph",
            "--value",
            "true",
        ],
    )
    assert out.exit_code == 3 and "really?" in out.output  # paused again at the second


def test_effect_idempotency_key_is_stable_and_journal_serves_reruns(tmp_path):
    app = research_graph().compile(store=str(tmp_path / "x.db"))
    r = run_to_end(app)
    assert "key=r:gather@0:0" in r.state.notes
    effects = app.store.effects("r")
    assert [(e.step, e.task_path, e.seq, e.name) for e in effects] == [
        (0, "gather", 0, "search"),
        (1, "summarise", 0, "llm"),
    ]


def test_non_json_effect_result_is_a_clear_error(tmp_path):
    class S(BaseModel):
        x: int = 0

    async def bad(s: S, ctx: NodeContext) -> dict:
        await ctx.effect("opaque", lambda: object())
        return {}

    g = GraphBuilder(S).add_node(bad).add_edge(START, "bad").add_edge("bad", END)
    with pytest.raises(NodeFailed) as e:
        g.compile(store=str(tmp_path / "x.db")).run_sync({})
    assert isinstance(e.value.__cause__, EffectError)
    assert "effect 'opaque' (#0) of node 'bad' returned object, which is not JSON" in str(e.value)


def test_breakpoints_before_and_after(tmp_path):
    app = research_graph(with_approval=False).compile(
        store=str(tmp_path / "x.db"), interrupt_before=["summarise"]
    )
    r = app.run_sync({"topic": "t"}, run_id="b")
    assert r.status == "paused" and r.reason == "breakpoint before 'summarise'"
    assert r.state.hits and not r.state.summary
    r = app.resume_sync("b")
    assert r.status == "completed" and r.state.summary
    app2 = research_graph(with_approval=False).compile(store=str(tmp_path / "y.db"))
    r = app2.run_sync({"topic": "t"}, run_id="a", interrupt_after=["gather"])
    assert r.status == "paused" and r.reason == "breakpoint after 'gather'"
    assert app2.resume_sync("a").status == "completed"


def test_pause_request_stops_at_next_boundary(tmp_path):
    from tests.composition.graphs import slow_loop

    db = str(tmp_path / "x.db")
    app = slow_loop().compile(store=db)
    other = slow_loop().compile(store=db)

    async def scenario():
        task = asyncio.create_task(app.run({}, run_id="p"))
        await asyncio.sleep(0.3)
        other.pause("p")
        return await asyncio.wait_for(task, 5)

    r = asyncio.run(scenario())
    assert r.status == "paused" and r.reason == "pause requested"
    n = r.state.n
    assert n > 0
    r2 = asyncio.run(_resume_then_cancel(app))
    assert r2.state.n > n


async def _resume_then_cancel(app):
    task = asyncio.create_task(app.resume("p"))
    await asyncio.sleep(0.2)
    app.cancel("p")
    return await task


def test_replay_is_offline_and_identical(tmp_path, no_network):
    app = research_graph().compile(store=str(tmp_path / "x.db"))
    run_to_end(app)
    LIVE["raise"] = True  # any live call now fails
    report = asyncio.run(app.replay("r"))
    assert report.identical and report.activations == 4
    assert not no_network
    assert_replays(app, "r")


def test_replay_reports_first_divergence_after_a_code_change(tmp_path):
    app = research_graph(with_approval=False).compile(store=str(tmp_path / "x.db"))
    app.run_sync({"topic": "t"}, run_id="r")
    LIVE["raise"] = True
    VARIANT["summarise_prefix"] = "regarding"  # the "code change": a different LLM prompt
    report = asyncio.run(app.replay("r", raise_on_divergence=False))
    d = report.first_divergence
    assert not report.identical and d is not None
    assert (d.kind, d.step, d.node) == ("effect", 1, "summarise")
    assert d.effect["name"] == "llm"
    assert "regarding" in json.dumps(d.effect["request"])
    assert "about" in json.dumps(d.effect["recorded_request"])
    with pytest.raises(ReplayDivergence, match="diverged at step 1, node 'summarise'"):
        asyncio.run(app.replay("r"))


def test_replay_field_diff_when_a_node_computes_differently(tmp_path):
    class S(BaseModel):
        n: int = 0
        label: str = ""

    factor = {"v": 2}

    def double(s: S) -> dict:
        return {"n": s.n * factor["v"], "label": "x"}

    def g():
        b = GraphBuilder(S, name="m").add_node("a", lambda s: {"n": 1}).add_node(double)
        return b.add_edge(START, "a").add_edge("a", "double").add_edge("double", END)

    app = g().compile(store=str(tmp_path / "x.db"))
    app.run_sync({}, run_id="r")
    factor["v"] = 3
    report = asyncio.run(app.replay("r", raise_on_divergence=False))
    d = report.first_divergence
    assert (d.kind, d.step, d.node) == ("update", 1, "double")
    assert d.fields == {"n": {"recorded": 2, "replayed": 3}}


def test_replay_many_and_cli(tmp_path):
    db = str(tmp_path / "x.db")
    app = research_graph(with_approval=False).compile(store=db)
    ids = [app.run_sync({"topic": f"t{i}"}).run_id for i in range(3)]
    LIVE["raise"] = True
    reports = asyncio.run(app.replay_many(ids))
    assert all(r.identical for r in reports)
    out = CliRunner().invoke(
        cli, ["replay", ids[0], "--db", db, "--graph", "tests.durable.graphs:research_graph"]
    )
    assert out.exit_code == 1 and "recorded with a different graph" in out.output
    out = CliRunner().invoke(
        cli, ["replay", ids[0], "--db", db, "--graph", "tests.durable.graphs:no_approval"]
    )
    assert out.exit_code == 0, out.output
    assert "replay identical" in out.output


def test_fork_from_a_step_with_a_patch(tmp_path):
    db = str(tmp_path / "x.db")
    app = research_graph(with_approval=False).compile(store=db)
    app.run_sync({"topic": "original"}, run_id="parent")
    calls = LIVE["calls"]
    child = app.run_sync  # noqa: F841 - keep the API visible in the test
    r = asyncio.run(app.fork("parent", at=1, update={"hits": ["patched"]}, new_run_id="kid"))
    assert r.status == "completed"
    assert r.state.summary == "summary of about patched"
    assert LIVE["calls"] == calls + 1  # the summarise LLM call ran again (new request)
    kid = app.get_run("kid")
    assert kid.parent_id == "parent" and kid.parent_step == 1
    # reuse_effects: an unchanged request is served from the parent's journal
    r2 = asyncio.run(app.fork("parent", at=1, reuse_effects=True, new_run_id="kid2"))
    assert r2.state.summary == app.get_state("parent").summary
    assert LIVE["calls"] == calls + 1
    rows = [
        json.loads(x)
        for x in CliRunner().invoke(cli, ["runs", "--db", db, "--json"]).output.splitlines()
    ]
    assert {(r["id"], r["parent_id"], r["parent_step"]) for r in rows if r["parent_id"]} == {
        ("kid", "parent", 1),
        ("kid2", "parent", 1),
    }
    out = CliRunner().invoke(
        cli,
        [
            "fork",
            "parent",
            "--at",
            "1",
            "--set",
            '{"topic": "cli"}',
            "--db",
            db,
            "--graph",
            "tests.durable.graphs:no_approval",
        ],
    )
    assert out.exit_code == 0, out.output and "completed" in out.output


def test_assert_resumable_on_the_research_graph():
    app = research_graph().compile(store=":memory:")
    report = assert_resumable(app, {"topic": "t"}, value=lambda payload: True)
    assert report.crash_points > 20
    assert {
        "effect.before_call",
        "effect.after_call",
        "store.after_commit",
    } <= report.points_reached


def test_a_changed_effect_request_on_resume_runs_live_and_is_flagged(tmp_path):
    from flowstate.checkpoints import EffectRecord
    from tests.durable.graphs import no_approval

    app = no_approval().compile(store=str(tmp_path / "y.db"))
    r = app.run_sync({"topic": "t"}, run_id="s", interrupt_before=["summarise"])
    assert r.status == "paused"
    # a journal entry for summarise's effect with another prompt, as if the code had changed
    # after a crash between the effect and the commit
    old = EffectRecord(
        run_id="s",
        step=1,
        task_path="summarise",
        seq=0,
        name="llm",
        request='{"args":["concerning t-0, t-1, t-2"],"kwargs":{}}',
        response='"old summary"',
        created_at=0.0,
    )
    app.store.record_effect(old)
    events: list = []
    r = asyncio.run(app.resume("s", on_event=events.append))
    assert r.status == "completed" and r.state.summary == "summary of about t-0, t-1, t-2"
    flagged = [e for e in events if e.kind == "effect_recorded" and e.diverged]
    assert [(e.step, e.task_path, e.seq) for e in flagged] == [(1, "summarise", 0)]
    journal = app.store.effects("s", 1, "summarise")
    assert journal[0].response == '"summary of about t-0, t-1, t-2"'  # replaced
    assert any("EffectDivergence" in a.error for a in app.store.attempts("s"))
    assert_replays(app, "s")
