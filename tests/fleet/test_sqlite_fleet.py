"""The fleet on one SQLite file (several processes on one machine), workers in this
process, each with its own store object (its own connection, as a separate process would
have): enqueue, claim, flow control, dead letters, requeue, cancel, the commands, the
enqueue-only service, and a database made before ``m701_queue``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowstate.checkpoints import RateLimit, RunQueue, SQLiteStore, doctor
from flowstate.engine import Worker
from flowstate.errors import QueueUnavailable
from tests.fleet import fleet_graphs as fg


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def until(predicate: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def test_an_in_memory_sqlite_store_is_refused_naming_the_fix() -> None:
    app = fg.chain(1, 0).bind(SQLiteStore(":memory:"))
    with pytest.raises(QueueUnavailable, match=r"FS230.*in-memory.*runs\.db.*postgresql://"):
        app.enqueue({})


def test_runs_enqueued_on_a_file_are_claimed_once_each_by_two_workers(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    app = fg.chain(3, 0).bind(SQLiteStore(db))
    ids = [app.enqueue({}).id for _ in range(12)]
    assert {app.get_run(i).status for i in ids} == {"queued"}
    assert sorted(r.run_id for r in RunQueue(app.store).queued()) == sorted(ids)

    async def main() -> None:
        w1 = Worker(SQLiteStore(db), {"chain": fg.chain(3, 0)}, concurrency=3, lease_ttl=5)
        w2 = Worker(SQLiteStore(db), {"chain": fg.chain(3, 0)}, concurrency=3, lease_ttl=5)
        async with running(w1), running(w2):
            await until(
                lambda: all(app.get_run(i).status == "completed" for i in ids), 60, "all runs"
            )
            infos = RunQueue(app.store).workers()
            assert {w.id for w in infos} == {w1.id, w2.id}
            assert all(w.graphs == {"chain": app.fingerprint} for w in infos)
        assert w1.executed + w2.executed == len(ids)

    asyncio.run(main())
    for i in ids:
        assert app.get_state(i).seen == ["n0", "n1", "n2"]
        assert len(app.store.writes(i)) == 3
    assert RunQueue(app.store).queued() == []
    assert {w.state for w in RunQueue(app.store).workers()} == {"stopped"}


def test_an_idle_worker_wakes_on_new_work_without_waiting_for_its_poll(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    app = fg.chain(1, 0).bind(SQLiteStore(db))

    async def main() -> float:
        # poll of 30 s: only the data_version watch can wake it in time
        w = Worker(SQLiteStore(db), {"chain": fg.chain(1, 0)}, poll=30, lease_ttl=5)
        async with running(w):
            await until(lambda: w.listening, 20, "the watch")
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            run = app.enqueue({})
            await until(lambda: app.get_run(run.id).status == "completed", 10, "the run")
            return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < 2.0, f"an idle worker took {took:.2f}s to pick up new work"


def test_a_cancel_reaches_the_worker_mid_node(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    slow = fg.chain(1, 60.0)
    app = slow.bind(SQLiteStore(db))
    run = app.enqueue({})

    async def main() -> float:
        w = Worker(SQLiteStore(db), {"chain": slow}, lease_ttl=5, poll=30)
        async with running(w):
            await until(lambda: run.id in w.held, 20, "the claim")
            await asyncio.sleep(0.3)  # inside the node now
            t0 = time.monotonic()
            app.cancel(run.id)  # another connection: the worker sees the file change
            await until(lambda: run.id not in w.held, 5, "the worker to let go")
            return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < 1.0, f"cancel took {took:.2f}s to reach the worker"
    assert app.get_run(run.id).status == "cancelled"
    assert RunQueue(app.store).queued() == []


def test_a_failing_run_is_dead_lettered_with_reasons_and_requeued(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    app = fg.boom().bind(SQLiteStore(db))
    run = app.enqueue({}, max_attempts=2)

    async def main() -> None:
        w = Worker(SQLiteStore(db), {"boom": fg.boom()}, backoff=0.05, lease_ttl=5, poll=0.2)
        async with running(w):
            await until(lambda: app.get_run(run.id).status == "dead", 30, "the dead letter")
            dead = app.get_run(run.id)
            assert dead.error is not None and "dead letter after 2 attempts" in dead.error
            assert dead.error.count("the node is broken") == 2
            assert RunQueue(app.store).queued() == []
            assert app.requeue(run.id, max_attempts=2).status == "queued"
            await until(lambda: app.get_run(run.id).status == "dead", 30, "a second burial")

    asyncio.run(main())


def test_a_rolling_deploy_waits_for_a_compatible_worker(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    old = fg.chain(2, 0).bind(SQLiteStore(db))
    run = old.enqueue({}, max_attempts=1)
    new = fg.chain(3, 0)
    assert new.fingerprint != old.fingerprint

    async def main() -> None:
        w_new = Worker(SQLiteStore(db), {"chain": new}, lease_ttl=5, poll=0.1)
        async with running(w_new):
            await until(lambda: run.id in w_new.skipped, 20, "the new worker to decline")
            await asyncio.sleep(0.3)
            (row,) = RunQueue(old.store).queued()
            assert row.attempts == 0 and row.worker is None
            w_old = Worker(SQLiteStore(db), {"chain": fg.chain(2, 0)}, lease_ttl=5, poll=0.1)
            async with running(w_old):
                await until(lambda: old.get_run(run.id).status == "completed", 20, "the run")

    asyncio.run(main())
    assert old.get_state(run.id).seen == ["n0", "n1"]


def test_a_queue_limit_holds_across_workers_on_a_file(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    app = fg.chain(2, 0.15).bind(store)
    RunQueue(store).flow.limit_queue("narrow", 2)
    ids = [app.enqueue({}, queue="narrow").id for _ in range(8)]
    other = [app.enqueue({}).id for _ in range(3)]
    peak = 0

    async def main() -> None:
        nonlocal peak
        workers = [
            Worker(
                SQLiteStore(db),
                {"chain": fg.chain(2, 0.15)},
                concurrency=4,
                queues=["narrow", "default"],
                lease_ttl=5,
                poll=0.1,
            )
            for _ in range(2)
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        deadline = time.monotonic() + 60
        while not all(app.get_run(i).status == "completed" for i in ids + other):
            assert time.monotonic() < deadline, "the limited queue did not drain"
            held = [r for r in RunQueue(store).queued("narrow") if r.worker is not None]
            peak = max(peak, len(held))
            await asyncio.sleep(0.01)
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert peak == 2, f"at most 2 runs of 'narrow' at once, saw {peak}"
    assert RunQueue(store).flow.limits() == [
        {"key": "queue:narrow", "max_running": 2, "per_second": None, "burst": None}
    ]
    with pytest.raises(ValueError, match="max_running"):
        RunQueue(store).flow.limit_queue("narrow", 0)


def test_a_rate_limit_is_shared_by_every_connection_to_the_file(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    a = RateLimit(SQLiteStore(db), "api-key-1", per_minute=600, burst=2)  # 10 a second
    b = RateLimit(SQLiteStore(db), "api-key-1")
    free = RateLimit(SQLiteStore(db), "no-limit-here")

    async def main() -> float:
        assert await free.acquire() == 0.0
        t0 = time.monotonic()

        async def take(limit: RateLimit) -> None:
            for _ in range(6):
                await limit.acquire()

        await asyncio.gather(take(a), take(b))
        return time.monotonic() - t0

    took = asyncio.run(main())
    # 12 takes: 2 from the burst, 10 at 10 a second -> at least ~1 s for both together
    assert 0.9 <= took < 10, took
    assert a.flow.limits()[0]["key"] == "rate:api-key-1"
    with pytest.raises(ValueError, match="can never be taken"):
        a.flow.take("api-key-1", 3)


def test_the_fleet_commands_on_a_file(tmp_path: Path) -> None:
    """`flowstate enqueue`, `workers` and `requeue` with ``--db path.db``."""
    from typer.testing import CliRunner

    from flowstate.cli import app as cli

    db = str(tmp_path / "runs.db")
    runner = CliRunner()
    out = runner.invoke(cli, ["enqueue", "tests.fleet.fleet_graphs:CHAIN", "--db", db])
    assert out.exit_code == 0, out.output
    queued = out.output.strip()
    app = fg.chain(1, 60.0).bind(SQLiteStore(db))
    assert app.get_run(queued).status == "queued"
    app.cancel(queued)
    run = app.enqueue({})

    async def main() -> str:
        w = Worker(SQLiteStore(db), {"chain": fg.chain(1, 60.0)}, lease_ttl=5)
        async with running(w):
            await until(lambda: run.id in w.held, 20, "the claim")
            out = runner.invoke(cli, ["workers", "--db", db])
            assert out.exit_code == 0, out.output
            app.cancel(run.id)
            return out.output

    shown = asyncio.run(main())
    assert "running" in shown and f"holding 1/4: {run.id}" in shown
    out = runner.invoke(cli, ["requeue", run.id, "--db", db, "--max-attempts", "1"])
    assert out.exit_code == 0, out.output
    assert app.get_run(run.id).status == "queued"
    (row,) = RunQueue(app.store).queued()
    assert (row.run_id, row.max_attempts, row.attempts) == (run.id, 1, 0)
    out = runner.invoke(cli, ["workers", "--json", "--db", db])
    assert '"state": "stopped"' in out.output


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
