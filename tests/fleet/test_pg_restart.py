"""PostgreSQL restarted (``pg_ctl restart -m immediate``: every session cut, as in a
crash) in the middle of a fleet's work, on a cluster of the test's own (``own_postgres``),
never the shared server: the worker processes reconnect and finish everything, each run
exactly once (checked in the store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowstate.checkpoints import PostgresStore, RunQueue
from tests.fleet import fleet_graphs as fg
from tests.fleet.conftest import wait_until
from tests.fleet.own_postgres import own_postgres

ROOT = Path(__file__).resolve().parents[2]
ARGS = ("--graphs", "tests.fleet.fleet_graphs:REGISTRY", "--concurrency", "3", "--lease-ttl", "3")


def _completed(store: PostgresStore) -> int:
    rows = store._read(store._q("SELECT count(*) FROM {runs} WHERE \"status\" = 'completed'"))
    return int(rows[0][0])


@pytest.mark.slow
def test_workers_reconnect_after_a_postgres_restart_and_finish_every_run(
    tmp_path: Path,
) -> None:
    nodes, sleep, runs = 5, 0.1, 40
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FLEET_NODES": str(nodes),
        "FLEET_SLEEP": str(sleep),
    }
    with own_postgres() as pg:
        store = PostgresStore(pg.dsn, schema="restart")
        app = fg.chain(nodes, sleep).bind(store)
        ids = [app.enqueue({}, max_attempts=5).id for _ in range(runs)]
        url = f"{pg.dsn}?schema=restart"
        procs = []
        for i in range(2):
            log = open(tmp_path / f"worker{i}.log", "wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flowstate.cli", "worker", "--db", url, *ARGS],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        try:
            wait_until(lambda: _completed(store) >= 8, 180, "8 completed runs")
            before = _completed(store)
            t0 = time.monotonic()
            pg.restart_immediate()
            restarted = time.monotonic() - t0

            def finished() -> bool:
                try:
                    return _completed(store) == runs
                except Exception:  # the server is still coming back
                    return False

            took = wait_until(finished, 300, "every run after the restart")
            assert all(p.poll() is None for p in procs), "a worker died with the server"
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                assert p.wait(60) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
        expected = [f"n{i}" for i in range(nodes)]
        for run_id in ids:
            run = app.get_run(run_id)
            assert run.status == "completed", (run_id, run.status, run.error)
            assert sorted(w.node for w in store.writes(run_id)) == expected, run_id
            assert app.get_state(run_id).seen == expected, run_id
        assert RunQueue(store).queued() == []
        logs = " ".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
        print(
            f"restart after {before}/{runs} runs took {restarted:.1f}s; all done "
            f"{took:.1f}s later; store-unavailable warnings in the workers' logs: "
            f"{logs.count('store unavailable') + logs.count('heartbeat failed')}"
        )
        store.close()
