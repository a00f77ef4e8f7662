"""The fleet's queue and worker: one contract suite that every queue backend passes (a
PostgreSQL schema for several machines, an SQLite file for several processes on one
machine), workers in this process, each with its own store (its own database session or
connection): enqueue, claim, dead letters, requeue, rolling deploys, cancel / pause /
interrupt answers reaching the worker, and the fleet commands. Where the queue cannot
be: an in-memory store."""

from __future__ import annotations

import asyncio
import time

import pytest

from flowstate.checkpoints import InMemoryStore, RunQueue
from flowstate.engine import Worker
from flowstate.errors import QueueUnavailable, RunStateError
from tests.fleet import fleet_graphs as fg
from tests.fleet.conftest import AnyFleet, running, until


def test_enqueue_needs_a_queue_store() -> None:
    app = fg.chain(2, 0).bind(InMemoryStore())
    with pytest.raises(QueueUnavailable, match=r"FS230.*postgresql://"):
        app.enqueue({})


def test_enqueued_runs_are_claimed_once_each_and_completed(any_fleet: AnyFleet) -> None:
    app = fg.chain(3, 0).bind(any_fleet.store())
    ids = [app.enqueue({}, queue="default").id for _ in range(12)]
    assert {app.get_run(i).status for i in ids} == {"queued"}
    assert sorted(r.run_id for r in RunQueue(app.store).queued()) == sorted(ids)

    async def main() -> None:
        w1 = Worker(any_fleet.store(), {"chain": fg.chain(3, 0)}, concurrency=3, lease_ttl=5)
        w2 = Worker(any_fleet.store(), {"chain": fg.chain(3, 0)}, concurrency=3, lease_ttl=5)
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
    assert RunQueue(app.store).queued() == []  # rows go when runs complete
    states = {w.state for w in RunQueue(app.store).workers()}
    assert states == {"stopped"}


def test_a_new_run_wakes_an_idle_worker_at_once(any_fleet: AnyFleet) -> None:
    """PostgreSQL wakes it with a NOTIFY, SQLite with the file's ``data_version``."""
    app = fg.chain(1, 0).bind(any_fleet.store())

    async def main() -> float:
        # poll of 30 s: only the NOTIFY (the data_version watch) can wake it in time
        w = Worker(any_fleet.store(), {"chain": fg.chain(1, 0)}, poll=30, lease_ttl=5)
        async with running(w):
            await until(lambda: w.listening, 20, "the LISTEN connection (the watch)")
            await asyncio.sleep(0.3)  # the worker is asleep now
            t0 = time.monotonic()
            run = app.enqueue({})
            await until(lambda: app.get_run(run.id).status == "completed", 10, "the run")
            return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < 2.0, f"an idle worker took {took:.2f}s to pick up new work"


def test_a_failing_run_is_retried_then_dead_lettered_with_reasons_and_requeued(
    any_fleet: AnyFleet,
) -> None:
    app = fg.boom().bind(any_fleet.store())
    run = app.enqueue({}, max_attempts=2)

    async def main() -> None:
        w = Worker(any_fleet.store(), {"boom": fg.boom()}, backoff=0.05, lease_ttl=5, poll=0.2)
        async with running(w):
            await until(lambda: app.get_run(run.id).status == "dead", 30, "the dead letter")
            dead = app.get_run(run.id)
            assert dead.error is not None
            assert "dead letter after 2 attempts" in dead.error
            assert dead.error.count("the node is broken") == 2
            assert RunQueue(app.store).queued() == []
            # by hand: back on the queue, attempts reset, and dead again after 2 more
            assert app.requeue(run.id, max_attempts=2).status == "queued"
            await until(lambda: app.get_run(run.id).status == "dead", 30, "a second burial")

    asyncio.run(main())
    with pytest.raises(RunStateError, match="completed"):
        done = fg.chain(1, 0).bind(app.store)
        finished = asyncio.run(done.run({}))
        done.requeue(finished.run_id)


def test_a_rolling_deploy_waits_for_a_compatible_worker_and_never_dead_letters(
    any_fleet: AnyFleet,
) -> None:
    old = fg.chain(2, 0).bind(any_fleet.store())
    run = old.enqueue({}, max_attempts=1)
    new = fg.chain(3, 0)  # the same graph name, another fingerprint (a node was added)
    assert new.fingerprint != old.fingerprint

    async def main() -> None:
        w_new = Worker(any_fleet.store(), {"chain": new}, lease_ttl=5, poll=0.1)
        async with running(w_new):
            await until(lambda: run.id in w_new.skipped, 20, "the new worker to decline")
            await asyncio.sleep(0.5)  # it keeps declining without spending attempts
            assert old.get_run(run.id).status == "queued"
            (row,) = RunQueue(old.store).queued()
            assert row.attempts == 0 and row.worker is None
            w_old = Worker(any_fleet.store(), {"chain": fg.chain(2, 0)}, lease_ttl=5, poll=0.1)
            async with running(w_old):
                await until(lambda: old.get_run(run.id).status == "completed", 20, "the run")

    asyncio.run(main())
    assert old.get_state(run.id).seen == ["n0", "n1"]


def test_cancel_reaches_the_worker_within_a_second_mid_node(
    any_fleet: AnyFleet,
) -> None:
    slow = fg.chain(1, 60.0)  # one node that sleeps a minute
    app = slow.bind(any_fleet.store())
    run = app.enqueue({})

    async def main() -> float:
        w = Worker(any_fleet.store(), {"chain": slow}, lease_ttl=5, poll=30)
        async with running(w):
            await until(lambda: run.id in w.held and w.listening, 20, "the claim")
            await asyncio.sleep(0.3)  # inside the node now
            t0 = time.monotonic()
            # another session: only the NOTIFY (the file's change) reaches the worker
            app.cancel(run.id)
            await until(lambda: run.id not in w.held, 5, "the worker to let go")
            return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < 1.0, f"cancel took {took:.2f}s to reach the worker"
    assert app.get_run(run.id).status == "cancelled"
    assert RunQueue(app.store).queued() == []
    assert app.store.signals(run.id) == set()


def test_pause_and_an_interrupt_answer_go_through_the_fleet(
    any_fleet: AnyFleet,
) -> None:
    slow = fg.chain(40, 0.1)
    app = slow.bind(any_fleet.store())
    asker = fg.ask().bind(app.store)
    run = app.enqueue({})
    question = asker.enqueue({})

    async def main() -> float:
        w = Worker(any_fleet.store(), {"chain": fg.chain(40, 0.1), "ask": fg.ask()}, lease_ttl=5)
        async with running(w):
            await until(lambda: asker.get_run(question.id).status == "paused", 20, "the ask")
            await until(lambda: len(app.store.writes(run.id)) >= 2, 20, "progress")
            app.pause(run.id)
            took = await until(lambda: app.get_run(run.id).status == "paused", 5, "the pause")
            # the worker drops the run's queue row once its execution has returned (until
            # then the row is claimed by it, so no other worker can take the paused run)
            await until(lambda: RunQueue(app.store).queued() == [], 5, "the row released")
            asker.requeue(question.id, "yes")  # the answer, through the queue
            answered = await until(
                lambda: asker.get_run(question.id).status == "completed", 20, "answer"
            )
            assert answered < 2.0, f"an answered run took {answered:.2f}s to complete"
            app.requeue(run.id)
            await until(lambda: app.get_run(run.id).status == "completed", 60, "the rest")
            return took

    took = asyncio.run(main())
    assert took < 1.0, f"pause took {took:.2f}s to reach the worker"
    assert asker.get_state(question.id).answer == "yes"
    assert app.get_state(run.id).seen == [f"n{i}" for i in range(40)]


def test_the_fleet_commands(any_fleet: AnyFleet) -> None:
    """`flowstate enqueue` puts a run on the queue; `flowstate workers` shows who holds
    what; `requeue` puts a cancelled run back (``--db`` a URL or a file)."""
    from typer.testing import CliRunner

    from flowstate.cli import app as cli

    url = any_fleet.url
    runner = CliRunner()
    out = runner.invoke(cli, ["enqueue", "tests.fleet.fleet_graphs:CHAIN", "--db", url])
    assert out.exit_code == 0, out.output
    queued = out.output.strip()
    app = fg.chain(1, 60.0).bind(any_fleet.store())
    assert app.get_run(queued).status == "queued"
    app.cancel(queued)
    run = app.enqueue({})

    async def main() -> str:
        w = Worker(any_fleet.store(), {"chain": fg.chain(1, 60.0)}, lease_ttl=5)
        async with running(w):
            await until(lambda: run.id in w.held, 20, "the claim")
            out = runner.invoke(cli, ["workers", "--db", url])
            assert out.exit_code == 0, out.output
            app.cancel(run.id)
            return out.output

    shown = asyncio.run(main())
    assert "running" in shown and f"holding 1/4: {run.id}" in shown
    assert "graphs chain" in shown and "heartbeat" in shown
    out = runner.invoke(cli, ["requeue", run.id, "--db", url, "--max-attempts", "1"])
    assert out.exit_code == 0, out.output
    assert app.get_run(run.id).status == "queued"
    (row,) = RunQueue(app.store).queued()
    assert (row.run_id, row.max_attempts, row.attempts) == (run.id, 1, 0)
    out = runner.invoke(cli, ["workers", "--json", "--db", url])
    assert '"state": "stopped"' in out.output


def test_the_fleet_commands_refuse_an_in_memory_database() -> None:
    """An in-memory database lives in one process: no worker could see its queue. The
    refusal names the fix (an SQLite file or PostgreSQL)."""
    from typer.testing import CliRunner

    from flowstate.cli import app as cli

    for db in (":memory:", "memory://"):
        for argv in (
            ["workers", "--db", db],
            ["enqueue", "tests.fleet.fleet_graphs:CHAIN", "--db", db],
            ["worker", "--graphs", "tests.fleet.fleet_graphs:REGISTRY", "--db", db],
        ):
            out = CliRunner().invoke(cli, argv)
            assert out.exit_code != 0
            shown = out.output + (out.stderr or "")
            assert "FS230" in shown and "in-memory" in shown, (argv, shown)
            assert "--db runs.db" in " ".join(shown.split()), shown
