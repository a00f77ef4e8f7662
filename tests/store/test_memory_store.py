"""What is particular to ``InMemoryStore`` (the contract suite covers the rest: it runs
against the "memory" backend of ``conftest.py`` unchanged).

Pinned here: the engine gives on it what it gives on SQLite (golden graph with effects, an
interrupt and resume; reference graphs; subgraph child runs; replay and fork; a crash after
an activation commit then resume); ``memory://`` opens one; ``ctx.memory`` and commit hooks
are refused clearly; records are kept as given (no copy, no JSON); failing writes change
nothing; and a commit costs microseconds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowstate import END, START, GraphBuilder, NodeContext
from flowstate.checkpoints import InMemoryStore, SQLiteStore
from flowstate.engine import open_store
from flowstate.errors import RunNotFound, RunStateError
from tests.composition.graphs import map_reduce, nested
from tests.conftest import SimulatedCrash
from tests.refgraphs import GRAPHS

from ._graphs import chain_final, chain_graph, golden_graph
from .conftest import Rec
from .test_contract import dump


def _rows(store: Any, run_id: str) -> dict[str, Any]:
    """Every row of a run without its wall-clock columns, for cross-backend equality."""
    clock = {"created_at", "updated_at", "started_at", "finished_at"}
    run = store.get_run(run_id)
    return {
        "run": run.model_dump(exclude=clock | {"fingerprint", "graph_doc"}),
        "steps": [s.model_dump(exclude=clock) for s in store.steps(run_id)],
        "writes": [w.model_dump(exclude=clock) for w in store.writes(run_id)],
        "effects": [e.model_dump(exclude=clock) for e in store.effects(run_id)],
        "interrupts": [i.model_dump(exclude=clock) for i in store.interrupts(run_id)],
        "attempts": [a.model_dump(exclude=clock) for a in store.attempts(run_id)],
    }


def _history(app: Any, run_id: str) -> list[tuple[Any, ...]]:
    return [
        (h.step, h.node, h.task_path, h.update, h.effects, h.run_id, h.depth)
        for h in app.history(run_id)
    ]


# -- the store object ---------------------------------------------------------------------------


def test_the_store_has_the_sqlite_attributes_the_engine_reads() -> None:
    s = InMemoryStore()
    assert s.path == "memory://" and s.memory is True
    assert s.integrity_check() == "ok"
    assert not hasattr(s, "conn"), "engine code that needs a connection checks SQLiteStore"
    assert s.fences == {} and s.commits == 0
    s.close()


def test_memory_url_opens_a_fresh_in_memory_store() -> None:
    a, b = open_store("memory://", "normal"), open_store("memory://", "normal")
    assert isinstance(a, InMemoryStore) and isinstance(b, InMemoryStore) and a is not b
    assert isinstance(open_store(":memory:", "normal"), SQLiteStore)
    app = chain_graph("memory://", 3)
    r = app.run_sync({"seed": 2}, run_id="c")
    assert r.state == chain_final(2, 3)
    assert isinstance(app.store, InMemoryStore) and len(app.store.writes("c")) == 3


def test_records_are_kept_as_given_and_returned_without_copying(rec: Rec) -> None:
    s = InMemoryStore()
    run, s0, w, e = rec.run("r"), rec.step("r", 0), rec.write("r", 0, "a"), rec.effect("r", 0, "a")
    s.create_run(run, s0)
    s.commit("r", writes=[w], effects=[e])
    assert s.get_run("r") is run and s.steps("r")[0] is s0
    assert s.writes("r")[0] is w and s.effects("r")[0] is e
    s.update_run("r", status="failed", error="boom")
    got = s.get_run("r")
    assert got is s.get_run("r"), "the updated record is built once, then cached"
    assert (got.status, got.error) == ("failed", "boom") and got.input == run.input


def test_sibling_stores_share_the_tables_but_not_the_fences(rec: Rec) -> None:
    a = InMemoryStore()
    b = a.sibling()
    a.create_run(rec.run("r"), rec.step("r", 0), owner="a", ttl=30)
    assert b.get_run("r") == a.get_run("r") and b.fences == {}
    assert b.acquire("r", "b", 30, alive=lambda o: False) == 2
    with pytest.raises(RunStateError, match="epoch 1 was taken over"):
        a.commit("r", step=rec.step("r", 1))
    assert b.steps("r") == a.steps("r") and len(a.steps("r")) == 1


# -- refusals and all-or-nothing writes -------------------------------------------------------


def test_a_commit_hook_is_refused_before_anything_is_written(rec: Rec) -> None:
    s = InMemoryStore()
    s.create_run(rec.run("r"), rec.step("r", 0))
    before = dump(s, "r")
    called: list[Any] = []
    with pytest.raises(RunStateError, match="no hook") as ei:
        s.commit(
            "r",
            writes=[rec.write("r", 0, "a")],
            step=rec.step("r", 1),
            run_fields={"head_step": 1},
            hook=called.append,
        )
    assert "SQLite" in str(ei.value)
    assert called == [] and dump(s, "r") == before


def test_ctx_memory_is_refused_on_an_in_memory_store() -> None:
    from pydantic import BaseModel

    class S(BaseModel):
        n: int = 0

    async def remember(s: S, ctx: NodeContext) -> dict[str, int]:
        ctx.memory("user", "episodic").add("hello")
        return {"n": 1}

    g = GraphBuilder(S, name="mem")
    g.add_node(remember)
    g.add_edge(START, "remember")
    g.add_edge("remember", END)
    app = g.compile(store=InMemoryStore())
    with pytest.raises(Exception) as ei:
        app.run_sync({}, run_id="m")
    text = f"{ei.value} {ei.value.__cause__}"
    assert "SQLite" in text and "InMemoryStore" in text
    assert app.store.writes("m") == []


@pytest.mark.parametrize(
    "fields",
    [{"status": "bogus"}, {"head_step": "3"}, {"head_step": True}, {"error": 5}],
)
def test_run_field_values_are_checked_before_anything_is_written(
    rec: Rec, fields: dict[str, Any]
) -> None:
    """SQLite stores such a value and fails on reading the row back; this store refuses it
    up front, with nothing of the commit kept."""
    s = InMemoryStore()
    s.create_run(rec.run("r"), rec.step("r", 0))
    before = dump(s, "r")
    with pytest.raises(ValueError, match="run r"):
        s.commit("r", writes=[rec.write("r", 0, "a")], step=rec.step("r", 1), run_fields=fields)
    with pytest.raises(ValueError, match="run r"):
        s.update_run("r", **fields)
    assert dump(s, "r") == before


def test_a_failing_migration_changes_nothing(rec: Rec) -> None:
    s = InMemoryStore()
    s.create_run(rec.run("r"), rec.step("r", 0, snapshot='{"n":0}'))
    s.commit(
        "r",
        writes=[rec.write("r", 0, "a"), rec.write("r", 0, "b", seq=1)],
        step=rec.step("r", 1, snapshot='{"n":1}'),
    )
    before = dump(s, "r")

    def update(raw: str) -> str:
        if '"n":1' in raw:
            raise ValueError("cannot convert")
        return raw.replace('"n"', '"m"')

    with pytest.raises(ValueError, match="cannot convert"):
        s.migrate_run(
            "r",
            state=lambda raw: raw.replace('"n"', '"m"'),
            update=update,
            fingerprint="x" * 64,
            graph_doc="{}",
        )
    assert dump(s, "r") == before

    s.migrate_run(
        "r",
        state=lambda raw: raw.replace('"n"', '"m"'),
        update=lambda raw: raw.replace('"n"', '"m"'),
        fingerprint="x" * 64,
        graph_doc="{}",
    )
    run = s.get_run("r")
    assert (run.input, run.fingerprint, run.graph_doc) == ('{"m":0}', "x" * 64, "{}")
    assert [st.snapshot for st in s.steps("r")] == ['{"m":0}', '{"m":1}']
    assert [w.update for w in s.writes("r")] == ['{"m":1}', '{"m":1}']
    with pytest.raises(RunNotFound):
        s.migrate_run("ghost", state=str, update=str, fingerprint="", graph_doc="")


def test_list_runs_with_a_negative_limit_lists_every_run_as_sqlite_does(
    rec: Rec, tmp_path: Path
) -> None:
    for s in (InMemoryStore(), SQLiteStore(tmp_path / "l.db")):
        for i in range(5):
            s.create_run(rec.run(f"r{i}", created_at=100.0 + i), rec.step(f"r{i}", 0))
        assert [r.id for r in s.list_runs(limit=-1)] == ["r4", "r3", "r2", "r1", "r0"]
        assert s.list_runs(limit=0) == []
        assert len(s.largest_runs(-1)) == 5


# -- the engine on it gives what it gives on SQLite -----------------------------------------------


def test_golden_graph_with_effects_interrupt_and_resume_matches_sqlite(tmp_path: Path) -> None:
    out = []
    for store in (SQLiteStore(tmp_path / "g.db"), InMemoryStore()):
        app = golden_graph(store)
        first = asyncio.run(app.run({"n": 1}, run_id="e1"))
        assert (first.status, first.step) == ("paused", 1)
        done = asyncio.run(app.resume("e1", value="yes"))
        assert done.status == "completed"
        assert app.get_state("e1") == done.state
        out.append((done.state, _history(app, "e1"), _rows(store, "e1"), store.integrity_check()))
        store.close()
    assert out[1] == out[0]
    assert out[0][0].log == ["g0", "g1", "g2", "g3:33"] and out[0][3] == "ok"


@pytest.mark.parametrize("graph", ["linear4", "fanout_join", "loop"])
def test_reference_graphs_match_sqlite(tmp_path: Path, graph: str) -> None:
    results = []
    for store in (SQLiteStore(tmp_path / "ref.db"), InMemoryStore()):
        app = GRAPHS[graph](str(tmp_path / "sink.db"), 0.0).compile(store=store)
        r = app.run_sync({}, run_id="r")
        assert r.status == "completed"
        results.append((r.state, _history(app, "r"), _rows(store, "r")))
    assert results[1] == results[0]


def test_replay_and_fork(tmp_path: Path) -> None:
    store = InMemoryStore()
    app = golden_graph(store)
    asyncio.run(app.run({"n": 1}, run_id="e1"))
    done = asyncio.run(app.resume("e1", value="yes"))
    report = asyncio.run(app.replay("e1"))
    assert report.identical and report.activations == 4, report.summary()
    fork = asyncio.run(app.fork("e1", at=2, update={"n": 100}, new_run_id="e1-fork"))
    assert fork.status == "completed"
    assert fork.state.log == ["g0", "g1", "g2", "g3:300"] and done.state.n == 33
    run = store.get_run("e1-fork")
    assert (run.parent_id, run.parent_step) == ("e1", 2)
    assert [r.id for r in store.list_runs(parent_id="e1")] == ["e1-fork"]


def test_subgraph_child_runs_and_map_reduce_match_sqlite(tmp_path: Path) -> None:
    mem, sq = InMemoryStore(), SQLiteStore(tmp_path / "nest.db")
    states = []
    for s in (sq, mem):
        app = nested(3).compile(store=s)
        states.append(app.run_sync({"x": 1}, run_id="n1").state)
        app.run_sync({"x": 2}, run_id="n10")
        mr = map_reduce().compile(store=s).run_sync({"items": [1, 2, 3, 4]}, run_id="m1")
        assert mr.state.total == 30
    assert states[1] == states[0]
    assert mem.child_run_ids("n1") == sq.child_run_ids("n1") == ["n1/1/sub2"]
    for kw in ({}, {"include_children": True}):
        assert [r.id for r in mem.list_runs(**kw)] == [r.id for r in sq.list_runs(**kw)]
    mem_sizes = mem.table_sizes()
    assert mem_sizes == {k: v for k, v in sq.table_sizes().items() if k in mem_sizes}
    mem.delete_run("n1")
    left = {r.id for r in mem.list_runs(include_children=True)}
    assert not [i for i in left if i == "n1" or i.startswith("n1/")]
    assert {"n10", "n10/1/sub2", "n10/1/sub2/1/sub3", "m1"} <= left
    sq.close()


class _CrashingStore(InMemoryStore):
    """Dies right after its k-th activation commit (tests/conftest.py's SimulatedCrash)."""

    crash_after = 0
    activation_commits = 0

    def commit(self, run_id: str, **kw: Any) -> None:  # type: ignore[override]
        super().commit(run_id, **kw)
        if kw.get("writes"):
            self.activation_commits += 1
            if self.activation_commits >= self.crash_after:
                raise SimulatedCrash(f"crash after {self.activation_commits} commits")


@pytest.mark.parametrize("k", [1, 7, 16])
def test_resume_after_a_crash_after_an_activation_commit(tmp_path: Path, k: int) -> None:
    graph = "fanout_join"
    golden = (
        GRAPHS[graph](str(tmp_path / "gold.db"), 0.0)
        .compile(store=InMemoryStore())
        .run_sync({}, run_id="gold")
        .state
    )
    crashing = _CrashingStore()
    crashing.crash_after = k
    with pytest.raises(SimulatedCrash):
        GRAPHS[graph](str(tmp_path / "sink.db"), 0.0).compile(store=crashing).run_sync(
            {}, run_id="r"
        )
    fresh = crashing.sibling()  # the same tables, another "process"
    assert len(fresh.writes("r")) >= k
    app = GRAPHS[graph](str(tmp_path / "sink.db"), 0.0).compile(store=fresh)
    assert app.resume_sync("r").status == "completed"
    assert app.get_state("r") == golden
    assert fresh.get_run("r").status == "completed"


# -- many commits ------------------------------------------------------------------------------
# (its speed is measured in bench/, W1(a): timed assertions do not belong in tests)


def test_many_activation_commits_keep_every_row(rec: Rec) -> None:
    s = InMemoryStore()
    s.create_run(rec.run("r"), rec.step("r", 0), owner="me", ttl=30)
    n = 2000
    for i in range(n):
        s.commit(
            "r",
            writes=[rec.write("r", i, "a")],
            step=rec.step("r", i + 1),
            run_fields={"status": "running", "head_step": i + 1, "error": None},
        )
    assert s.get_run("r").head_step == n and len(s.writes("r")) == n
