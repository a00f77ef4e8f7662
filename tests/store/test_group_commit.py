"""Group commit (``SQLiteStore.commit_many`` and the engine's ``_group.py``): several
activations in one transaction, each run's all-or-nothing, nothing of a fenced-out run
kept, and concurrent runs that commit together still store exactly what runs one by one
store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, Send, add
from flowstate.checkpoints import CommitEntry, SQLiteStore, doctor
from flowstate.errors import LeaseLost, RunNotFound, StoreError

from .conftest import Rec


def test_commit_many_keeps_each_runs_entries_together(tmp_path: Path) -> None:
    rec = Rec()
    a, b = SQLiteStore(tmp_path / "g.db"), SQLiteStore(tmp_path / "g.db")
    a.create_run(rec.run("ok"), rec.step("ok", 0))
    a.create_run(rec.run("fenced"), rec.step("fenced", 0), owner="me", ttl=30)
    a.acquire("fenced", "other", 30, alive=lambda o: False)  # another process took it over
    b.create_run(rec.run("twice"), rec.step("twice", 0))
    b.commit("twice", writes=[rec.write("twice", 0, "t")])
    entries = [
        CommitEntry("ok", [rec.write("ok", 0, "x")]),
        CommitEntry("fenced", [rec.write("fenced", 0, "x")]),
        CommitEntry("twice", [rec.write("twice", 0, "u")]),  # fine alone …
        CommitEntry(
            "ok",
            [rec.write("ok", 0, "y")],
            rec.step("ok", 1),
            {"head_step": 1, "status": "running", "error": None},
        ),
        CommitEntry("twice", [rec.write("twice", 0, "t")]),  # … but this one is stored
        CommitEntry("missing", [rec.write("missing", 0, "x")]),
    ]
    # the store that held the lease at epoch 1 now commits for it: fenced out
    a.fences["fenced"] = ("me", 1)
    before = a.commits
    out = a.commit_many(entries)
    assert a.commits == before + 1  # one transaction
    assert out[0] is None and out[3] is None
    assert isinstance(out[1], LeaseLost)
    assert isinstance(out[2], StoreError) and out[2] is out[4]  # the run's entries together
    assert isinstance(out[5], RunNotFound)
    assert sorted(w.task_path for w in a.writes("ok")) == ["x", "y"]
    assert a.get_run("ok").head_step == 1 and a.steps("ok")[-1].step == 1
    assert a.writes("fenced") == []
    assert [w.task_path for w in a.writes("twice")] == ["t"]
    assert doctor(a).ok


class Fan(BaseModel):
    total: Annotated[int, add] = 0
    count: int = 0


def graphs() -> tuple[GraphBuilder[Fan], GraphBuilder[Fan]]:
    chain = GraphBuilder(Fan, name="gc_chain")

    async def inc(s: Fan) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"count": s.count + 1}

    for i in range(5):
        chain.add_node(f"n{i}", inc)
    chain.add_edge(START, "n0")
    for i in range(4):
        chain.add_edge(f"n{i}", f"n{i + 1}")
    chain.add_edge("n4", END)

    fan = GraphBuilder(Fan, name="gc_fan")

    async def start(s: Fan) -> dict[str, int]:
        return {}

    def route(s: Fan) -> list[Send]:
        return [Send("branch", i) for i in range(20)]

    async def branch(i: int) -> dict[str, int]:
        await asyncio.sleep(0.001 * (i % 3))
        return {"total": i}

    fan.add_node(start)
    fan.add_node(branch)
    fan.add_edge(START, "start")
    fan.add_conditional_edges("start", route, targets=["branch"])
    fan.add_edge("branch", END)
    return chain, fan


@pytest.mark.parametrize("which", ["chain", "fan"])
def test_concurrent_runs_store_what_lone_runs_store(tmp_path: Path, which: str) -> None:
    chain, fan = graphs()
    g = chain if which == "chain" else fan
    grouped = g.compile(store=str(tmp_path / "grouped.db"))
    lone = g.compile(store=str(tmp_path / "lone.db"))

    async def together() -> list[Fan]:
        rs = await asyncio.gather(*(grouped.run({}, run_id=f"r{i}") for i in range(12)))
        return [r.state for r in rs]

    states = asyncio.run(together())
    commits = grouped.store.commits
    for i in range(12):
        asyncio.run(lone.run({}, run_id=f"r{i}"))
    # fewer transactions than activations: they were shared
    assert commits < lone.store.commits
    want = Fan(count=5) if which == "chain" else Fan(total=sum(range(20)))
    assert all(s == want for s in states)
    for i in range(12):
        a, b = grouped.store.writes(f"r{i}"), lone.store.writes(f"r{i}")
        assert [(w.step, w.task_path, w.seq, w.update) for w in a] == [
            (w.step, w.task_path, w.seq, w.update) for w in b
        ]
        assert [s.tasks for s in grouped.store.steps(f"r{i}")] == [
            s.tasks for s in lone.store.steps(f"r{i}")
        ]
        assert grouped.store.get_run(f"r{i}").status == "completed"
    assert doctor(grouped.store).ok
