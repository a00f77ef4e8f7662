"""Startup recovery and shutdown, in-process: stop → queued → the next server resumes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder
from flowstate.checkpoints import SQLiteStore
from flowstate.service import create_app
from flowstate.service._service import admission_rows

from .conftest import ThreadServer, wait_for
from .graphs import Work, calls, registry


def test_stopped_server_requeues_and_the_next_one_resumes(tmp_path: Path, calls_db: str) -> None:
    db = str(tmp_path / "runs.db")
    with ThreadServer(create_app(registry(), db=db)) as s:
        c = s.client()
        tid = c.post("/v1/tasks", json={"graph": "slow", "input": {"ticks": 30}}).json()["id"]
        store = s.service.store
        deadline = time.monotonic() + 10
        while len(store.effects(tid)) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    stopped = SQLiteStore(db)
    assert stopped.get_run(tid).status == "queued"  # not 'cancelled': nobody cancelled it
    journaled = [(e.seq, e.response) for e in stopped.effects(tid)]
    stopped.close()
    with ThreadServer(create_app(registry(), db=db)) as s:
        assert tid in s.service.recovered
        c = s.client()
        body = wait_for(c, tid, timeout=20)
        assert body["state"]["done"] == ["long", "after"]
        effects = s.service.store.effects(tid)
        assert [e.seq for e in effects] == list(range(30))  # one journal row per tick
        assert [(e.seq, e.response) for e in effects][: len(journaled)] == journaled
    ran = [n for r, n, _ in calls(calls_db) if r == tid]
    assert ran == ["long", "long", "after"]  # the interrupted activation ran again


def test_runs_of_unserved_or_changed_graphs(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.db")
    store = SQLiteStore(db)

    class Ghost(BaseModel):
        x: int = 0

    ghost = GraphBuilder(Ghost, name="ghost")
    ghost.add_node("g", lambda s: {"x": 1}).add_edge(START, "g").add_edge("g", END)
    old_steps = GraphBuilder(Work, name="steps")  # same name, different nodes
    old_steps.add_node("only", lambda s: {"log": ["only"]})
    old_steps.add_edge(START, "only").add_edge("only", END)
    for rid, builder in (("ghost1", ghost), ("old1", old_steps)):
        g = builder.compile(store=store)
        run, step0 = asyncio.run(admission_rows(g, g.state_model(), rid, None))
        store.create_run(run, step0)
    store.close()

    with ThreadServer(create_app(registry(), db=db)) as s:
        c = s.client()
        assert s.service.recovered == ["old1"]
        failed = wait_for(c, "old1", ("failed",))
        assert failed["error"].startswith("FS204") and "node 'only' removed" in failed["error"]
        assert failed["state"] is None  # the state of another graph is not rebuilt
        assert c.post("/v1/tasks/old1/resume").status_code == 409
        body = c.get("/v1/tasks/ghost1").json()
        assert body["status"] == "queued" and body["state"] is None and body["steps"] == []
        assert c.post("/v1/tasks/ghost1/resume").status_code == 409
        assert c.post("/v1/tasks/ghost1/cancel").json()["status"] == "cancelled"
        events = c.get("/v1/tasks/ghost1/events").text
        assert '"status":"cancelled"' in events
