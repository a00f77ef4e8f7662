"""A second ``flowstate serve`` on the same SQLite file (issue 16 item 2).

It used to reset the first server's running tasks to ``queued``, fail to claim them
(``RunOwned``) and record them as ``failed`` while the first server was still executing
them. A run whose lease is held by a live process is now left to it: not re-queued, not
failed; a refused claim is not a task failure.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from .conftest import subprocess_server
from .graphs import CALLS_ENV


def _statuses(db: str) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        return {str(r[0]): str(r[1]) for r in c.execute("SELECT id, status FROM runs")}


def _two_servers(tmp_path: Path, n_tasks: int, delay: float) -> None:
    db, sink = str(tmp_path / "runs.db"), str(tmp_path / "calls.db")
    env = {CALLS_ENV: sink}
    with subprocess_server(db, str(n_tasks), env=env) as first:
        c = httpx.Client(base_url=first.url, timeout=10)
        ids = [
            c.post(
                "/v1/tasks", json={"graph": "steps", "input": {"label": str(i), "delay": delay}}
            ).json()["id"]
            for i in range(n_tasks)
        ]
        deadline = time.monotonic() + 20
        while list(_statuses(db).values()).count("running") < n_tasks:
            assert time.monotonic() < deadline, _statuses(db)
            time.sleep(0.02)
        seen: set[tuple[str, str]] = set()
        with subprocess_server(db, str(n_tasks), env=env):
            deadline = time.monotonic() + 60
            while True:
                now = _statuses(db)
                seen |= set(now.items())
                if set(now.values()) == {"completed"}:
                    break
                assert time.monotonic() < deadline, now
                time.sleep(0.02)
        bad = sorted(s for s in seen if s[1] in ("failed", "queued"))
        assert not bad, f"the second server touched the first one's runs: {bad}"
        for t in ids:
            assert c.get(f"/v1/tasks/{t}").json()["status"] == "completed"


def test_a_second_server_leaves_the_first_ones_runs_alone(tmp_path: Path) -> None:
    _two_servers(tmp_path, n_tasks=4, delay=1.0)


@pytest.mark.slow
def test_a_second_server_leaves_the_first_ones_runs_alone_full(tmp_path: Path) -> None:
    _two_servers(tmp_path, n_tasks=20, delay=1.0)
