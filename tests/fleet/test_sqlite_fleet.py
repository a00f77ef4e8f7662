"""The fleet on one SQLite file, what only SQLite has (the queue's contract, which it
shares with PostgreSQL, is ``test_queue`` and ``test_flow``): an in-memory database
refused, the enqueue-only service on a file, and a database made before ``m701_queue``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from flowstate.checkpoints import RunQueue, SQLiteStore, doctor
from flowstate.engine import Worker
from flowstate.errors import QueueUnavailable
from tests.fleet import fleet_graphs as fg
from tests.fleet.conftest import running, until


def test_an_in_memory_sqlite_store_is_refused_naming_the_fix() -> None:
    app = fg.chain(1, 0).bind(SQLiteStore(":memory:"))
    with pytest.raises(QueueUnavailable, match=r"FS230.*in-memory.*runs\.db.*postgresql://"):
        app.enqueue({})


def test_an_enqueue_only_service_on_a_file(tmp_path: Path) -> None:
    """``create_app(enqueue_only=True)`` on an SQLite file admits tasks onto its queue;
    a worker on the same file executes them; the service reads the result."""
    from flowstate.service import create_app
    from tests.service.conftest import ThreadServer

    db = str(tmp_path / "runs.db")
    graphs = {"chain": fg.chain(3, 0.02)}
    with pytest.raises(QueueUnavailable, match="FS230"):
        create_app(graphs, db="memory://", enqueue_only=True)
    server = ThreadServer(create_app(graphs, db=db, enqueue_only=True)).__enter__()
    try:
        c: httpx.Client = server.client()
        tid = c.post("/v1/tasks", json={"graph": "chain", "input": {}}).json()["id"]
        time.sleep(0.3)
        assert c.get(f"/v1/tasks/{tid}").json()["status"] == "queued"

        async def main() -> None:
            w = Worker(SQLiteStore(db), {"chain": fg.chain(3, 0.02)}, lease_ttl=5)
            async with running(w):
                await until(
                    lambda: c.get(f"/v1/tasks/{tid}").json()["status"] == "completed", 30, "task"
                )

        asyncio.run(main())
        assert c.get(f"/v1/tasks/{tid}").json()["state"]["seen"] == ["n0", "n1", "n2"]
    finally:
        server.__exit__()


def test_a_database_made_before_m701_opens_and_gets_its_queue(tmp_path: Path) -> None:
    """m701 adds tables only: a file made before it opens, its runs verify, and the queue
    works on it."""
    import sqlite_utils

    from flowstate.checkpoints._sqlite_schema import migrations

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m701_queue")
    assert "queue" not in db.table_names()
    db.close()
    before = SQLiteStore(path)
    old = fg.chain(1, 0).bind(before)
    done = asyncio.run(old.run({}))
    before.close()
    store = SQLiteStore(path)
    assert {"queue", "workers", "flow_limits"} <= set(store.db.table_names())
    app = fg.chain(1, 0).bind(store)
    assert app.get_run(done.run_id).status == "completed"  # its hashes still verify
    run = app.enqueue({})
    assert [r.run_id for r in RunQueue(store).queued()] == [run.id]
    assert doctor(store).ok
