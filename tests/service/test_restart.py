"""SIGKILL the server mid-run, start it again: every task finishes, nothing committed is
lost and no committed node runs again (RELIABILITY.md R1, through the service)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx

from flowstate.checkpoints import SQLiteStore

from .conftest import subprocess_server
from .graphs import CALLS_ENV, STEP_NODES, calls

N_TASKS = 8
SLOTS = "3"


def _writes(db: str) -> dict[tuple[str, int, str], str]:
    store = SQLiteStore(db)
    try:
        return {
            (w.run_id, w.step, w.task_path): w.update
            for r in store.list_runs(limit=1000)
            for w in store.writes(r.id)
        }
    finally:
        store.close()


def _count_writes(db: str) -> int:
    """Read-only, so polling never takes the write lock from the server."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
            return int(c.execute("SELECT count(*) FROM writes").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_sigkill_then_restart_finishes_every_task(tmp_path: Path) -> None:
    db, sink = str(tmp_path / "runs.db"), str(tmp_path / "calls.db")
    env = {CALLS_ENV: sink}
    with subprocess_server(db, SLOTS, env=env) as proc:
        c = httpx.Client(base_url=proc.url, timeout=10)
        ids = [
            c.post(
                "/v1/tasks", json={"graph": "steps", "input": {"label": str(i), "delay": 0.12}}
            ).json()["id"]
            for i in range(N_TASKS)
        ]
        deadline = time.monotonic() + 20
        while _count_writes(db) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    committed = _writes(db)
    store = SQLiteStore(db)
    before = {r.id: r.status for r in store.list_runs()}
    store.close()
    assert set(before) == set(ids)
    assert "running" in before.values() and "queued" in before.values()
    in_flight = sum(1 for s in before.values() if s == "running")
    ran_before = Counter((r, n) for r, n, _ in calls(sink))

    with subprocess_server(db, SLOTS, env=env) as proc:
        c = httpx.Client(base_url=proc.url, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            statuses = {t: c.get(f"/v1/tasks/{t}").json()["status"] for t in ids}
            if set(statuses.values()) == {"completed"}:
                break
            assert "failed" not in statuses.values(), statuses
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)
        for t in ids:
            body = c.get(f"/v1/tasks/{t}").json()
            assert body["state"]["log"] == STEP_NODES
            assert [st["node"] for st in body["steps"]] == STEP_NODES
        # a task finished before this process started replays its final status only
        events = c.get(f"/v1/tasks/{ids[0]}/events").text
        assert "run_finished" in events

    after = _writes(db)
    # nothing committed was lost or changed
    assert {k: after[k] for k in committed} == committed
    assert len(after) == N_TASKS * len(STEP_NODES)
    # no committed node ran again; only the activations in flight at the kill re-ran
    ran = Counter((r, n) for r, n, _ in calls(sink))
    for run_id, _step, node in committed:
        assert ran[(run_id, node)] == 1, (run_id, node)
    assert set(ran) == {(t, n) for t in ids for n in STEP_NODES}
    assert all(v in (1, 2) for v in ran.values())
    redone = [k for k, v in ran.items() if v == 2]
    assert len(redone) <= in_flight
    assert all(ran_before[k] == 1 for k in redone)
    store = SQLiteStore(db)
    assert store.integrity_check() == "ok"
    store.close()
