"""Many tasks on one SQLite file: none lost, none failed by locking (RELIABILITY.md R4)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx

from flowstate.checkpoints import SQLiteStore

from .graphs import STEP_NODES, calls

N_TASKS = 50
SLOTS = 8


def test_fifty_concurrent_tasks_all_complete(serve, calls_db: str, tmp_path) -> None:
    s = serve(max_concurrent_runs=SLOTS)

    async def main() -> tuple[list[str], int, int]:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            posts = [
                c.post(
                    "/v1/tasks",
                    json={"graph": "steps", "input": {"label": f"t{i}", "delay": 0.03}},
                )
                for i in range(N_TASKS)
            ]
            rs = await asyncio.gather(*posts)
            assert [r.status_code for r in rs] == [202] * N_TASKS
            ids = [r.json()["id"] for r in rs]
            most_running = most_queued = 0
            deadline = time.monotonic() + 60
            while True:  # HTTP readers poll while the tasks run
                page, *_ = await asyncio.gather(
                    c.get("/v1/tasks", params={"limit": 100}),
                    *[c.get(f"/v1/tasks/{tid}") for tid in ids[::10]],
                )
                statuses = Counter(t["status"] for t in page.json()["items"])
                most_running = max(most_running, statuses["running"])
                most_queued = max(most_queued, statuses["queued"])
                if statuses["completed"] == N_TASKS:
                    return ids, most_running, most_queued
                assert not statuses["failed"], statuses
                assert time.monotonic() < deadline, statuses
                await asyncio.sleep(0.05)

    ids, most_running, most_queued = asyncio.run(main())
    assert most_running <= SLOTS
    assert most_queued > 0  # the bound was actually reached
    c = s.client()
    for tid in ids:
        body = c.get(f"/v1/tasks/{tid}").json()
        assert body["status"] == "completed"
        assert body["state"]["log"] == STEP_NODES
        assert [st["node"] for st in body["steps"]] == STEP_NODES
    ran = Counter((r, n) for r, n, _ in calls(calls_db))
    assert len(ran) == N_TASKS * len(STEP_NODES) and set(ran.values()) == {1}
    assert SQLiteStore(tmp_path / "runs.db").integrity_check() == "ok"


def test_busy_service_folds_the_wal_only_when_idle(serve, tmp_path) -> None:
    """The engine folds the WAL back (a checkpoint with an fsync) when the last run of a
    graph ends in the process; the service defers that while other tasks wait for a slot,
    and folds once it has nothing left to run."""
    s = serve(max_concurrent_runs=1)
    folds: list[int] = []
    fold = s.service._fold_wal
    s.service._fold_wal = lambda: (folds.append(len(s.service._live)), fold())
    n = 12

    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            rs = await asyncio.gather(
                *(
                    c.post(
                        "/v1/tasks",
                        json={"graph": "steps", "input": {"label": f"t{i}", "delay": 0.02}},
                    )
                    for i in range(n)
                )
            )
            ids = [r.json()["id"] for r in rs]
            deadline = time.monotonic() + 60
            while True:
                page = await c.get("/v1/tasks", params={"limit": 100})
                if all(t["status"] == "completed" for t in page.json()["items"]):
                    return ids
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

    assert len(asyncio.run(main())) == n
    # one slot: before the change every task's end folded the WAL (it ran alone)
    assert 1 <= len(folds) < n // 2, folds
    assert set(folds) == {1}  # only the finishing task itself was live
    assert SQLiteStore(tmp_path / "runs.db").integrity_check() == "ok"
