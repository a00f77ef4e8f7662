"""update_state: edits of stopped runs, recorded in history, replayed offline."""

from __future__ import annotations

import asyncio

import pytest

from flowstate import EditRefused, EditWhileRunning, UpdateRejected
from flowstate.checkpoints import SQLiteStore

from .graphs import S, asking_graph, routed_graph


def test_edit_at_a_breakpoint_is_read_by_the_paused_node_and_replays(db_path):
    app = routed_graph().compile(store=str(db_path), interrupt_before=("b",))
    r = app.run_sync({"n": 1}, run_id="r1")
    assert r.status == "paused"
    row = app.update_state("r1", {"note": "fixed", "log": ["edited"]}, by="alice")
    assert row.status == "paused" and row.head_step == 1
    # through the reducer: appended to the log, the paused step stays as it was
    assert app.get_state("r1") == S(n=1, note="fixed", log=["a:1", "edited"])
    edit = [h for h in app.history("r1") if h.edit]
    assert [(h.step, h.node, h.by, h.update) for h in edit] == [
        (1, "__edit__", "alice", {"note": "fixed", "log": ["edited"]})
    ]
    done = app.resume_sync("r1")
    assert done.status == "completed"
    assert done.state.log == ["a:1", "edited", "b:saw fixed"]
    report = asyncio.run(app.replay("r1"))
    assert report.identical and report.activations == 3  # a, the edit, b


def test_edit_as_node_routes_from_that_nodes_edges(db_path):
    app = routed_graph().compile(store=str(db_path), interrupt_before=("b",))
    app.run_sync({"n": 1}, run_id="r1")
    row = app.update_state("r1", {"n": 50}, as_node="a")
    assert row.head_step == 2  # the edit closed step 1; step 2 is planned from a's router
    done = app.resume_sync("r1")
    assert done.state.log == ["a:1", "c:50"]  # 'b' was dropped, 'c' ran
    assert [h.node for h in app.history("r1")] == ["a", "a", "c"]
    assert asyncio.run(app.replay("r1")).identical
    # a replay of a changed router diverges where the edit routed
    assert asyncio.run(app.replay("r1")).identical


def test_edit_of_a_paused_interrupt_is_seen_when_it_is_answered(db_path):
    app = asking_graph().compile(store=str(db_path))
    r = app.run_sync({"n": 2}, run_id="r1")
    assert r.status == "paused"
    app.update_state("r1", {"note": "hello"})
    done = app.resume_sync("r1", "yes")
    assert done.state.log == ["a:2", "ask:yes:hello", "c:2"]
    assert asyncio.run(app.replay("r1")).identical


def test_completed_run_edited_stays_completed_and_as_node_makes_it_resumable(db_path):
    app = routed_graph().compile(store=str(db_path))
    app.run_sync({"n": 1}, run_id="r1")
    row = app.update_state("r1", {"note": "after"})
    assert row.status == "completed"
    assert app.get_state("r1").note == "after"
    assert app.resume_sync("r1").state.note == "after"  # nothing runs again
    assert asyncio.run(app.replay("r1")).identical
    row = app.update_state("r1", {"n": 99}, as_node="a")
    assert row.status == "paused" and "resume" in (row.error or "")
    done = app.resume_sync("r1")
    assert done.status == "completed"
    assert done.state.log == ["a:1", "b:saw ", "c:99"]
    assert asyncio.run(app.replay("r1")).identical


def test_edits_are_validated_like_a_node_update_and_refused_cleanly(db_path):
    app = routed_graph().compile(store=str(db_path), interrupt_before=("b",))
    app.run_sync({"n": 1}, run_id="r1")
    before = app.history("r1")
    with pytest.raises(UpdateRejected, match="'nope' is not a field of S"):
        app.update_state("r1", {"nope": 1})
    with pytest.raises(UpdateRejected, match="n"):
        app.update_state("r1", {"n": "many"})
    with pytest.raises(EditRefused, match=r"FS222.*as_node='zz' is not a node"):
        app.update_state("r1", {"n": 2}, as_node="zz")
    assert app.history("r1") == before  # nothing was stored


def test_editing_a_run_with_a_live_lease_is_refused_naming_the_owner(db_path):
    app = routed_graph().compile(store=str(db_path), interrupt_before=("b",))
    app.run_sync({"n": 1}, run_id="r1")
    store = app.store
    assert isinstance(store, SQLiteStore)
    other = SQLiteStore(db_path)
    other.acquire("r1", "elsewhere:4242:abcd", 60.0)
    with pytest.raises(EditWhileRunning, match=r"FS221.*r1.*elsewhere:4242:abcd") as e:
        app.update_state("r1", {"n": 2})
    assert e.value.owner == "elsewhere:4242:abcd"
    other.close()


def test_a_half_done_step_is_refused_naming_what_committed(db_path):
    from flowstate import END, START, GraphBuilder

    from .graphs import a, ask

    g = GraphBuilder(S).add_node(a).add_node(ask)
    g.add_edge(START, "a").add_edge(START, "ask").add_edge(["a", "ask"], END)
    app = g.compile(store=str(db_path))
    assert app.run_sync({"n": 1}, run_id="r1").status == "paused"
    with pytest.raises(EditRefused, match=r"FS222.*\['a'\] \(still to run: \['ask'\]\)"):
        app.update_state("r1", {"n": 2})
    # a routing edit replaces the step's outcome; the committed write is kept as an attempt
    app.update_state("r1", {"n": 2}, as_node="ask")
    assert app.resume_sync("r1").state.n == 2
    assert [a.task_path for a in app.store.attempts("r1") if a.attempt < 0] == ["a"]


def test_fork_around_an_edit(db_path):
    app = routed_graph().compile(store=str(db_path), interrupt_before=("b",))
    app.run_sync({"n": 1}, run_id="r1")
    app.update_state("r1", {"note": "plain"})
    app.update_state("r1", {"n": 60}, as_node="a")
    app.resume_sync("r1")
    # step 1's input holds the plain edit, not the routing one (it closed the step)
    assert app.state_at("r1", 1).note == "plain" and app.state_at("r1", 1).n == 1
    assert app.state_at("r1", 2).n == 60
    forked = asyncio.run(app.fork("r1", at=1, new_run_id="f1"))
    assert forked.status == "paused"  # at its parent's breakpoint before 'b'
    forked = app.resume_sync("f1")
    assert forked.state.log == ["a:1", "b:saw plain"]  # the fork runs step 1 as planned
    after = asyncio.run(app.fork("r1", at=2, new_run_id="f2"))
    assert after.state.log == ["a:1", "c:60"]
