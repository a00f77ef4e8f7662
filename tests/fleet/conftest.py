"""Fixtures of the fleet tests.

- ``fleet``: a fresh Postgres schema per test (dropped after it), the URL workers are
  started with, and real worker processes (``flowstate worker``).
- ``any_fleet``: the queue's backends in ``FLEET_BACKENDS``, for the contract suites
  every backend must pass (``test_queue``, ``test_flow``): that Postgres schema, or an
  SQLite file (several processes on one machine). Each ``store()`` is a new store object
  on it (its own session or connection, as a separate worker process would have); ``url``
  is what ``--db`` takes.
- ``running(worker)`` and ``until(predicate, ...)``: a ``Worker`` run in this process's
  event loop for a block, and waiting for what it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstate.checkpoints import SQLiteStore
from flowstate.engine import Worker
from tests.store.conftest import drop_pg_schema, pg_schema, require_postgres

ROOT = Path(__file__).resolve().parents[2]


class Fleet:
    """A schema and the worker processes started on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.dsn = require_postgres()
        self.schema = pg_schema(tmp_path, "fleet")
        self.url = f"{self.dsn}?schema={self.schema}"
        self.tmp = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stores: list[Any] = []

    def store(self) -> Any:
        from flowstate.checkpoints import PostgresStore

        s = PostgresStore(self.dsn, schema=self.schema)
        self._stores.append(s)
        return s

    def worker(
        self, *args: str, env: dict[str, str] | None = None, name: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``flowstate worker`` on this schema (its output in ``<name>.log``)."""
        name = name or f"worker{len(self.procs)}"
        p = start_worker(self.tmp, self.url, *args, env=env, name=name)
        self.procs.append(p)
        return p

    def close(self) -> None:
        stop_workers(self.procs)
        for s in self._stores:
            s.close()


def start_worker(
    tmp: Path, db: str, *args: str, env: dict[str, str] | None, name: str
) -> subprocess.Popen[bytes]:
    """``flowstate worker --db DB`` serving ``fleet_graphs``, its output in
    ``tmp/<name>.log`` (the path is on the process as ``log_path``)."""
    log = open(tmp / f"{name}.log", "wb")
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowstate.cli",
            "worker",
            "--db",
            db,
            "--graphs",
            "tests.fleet.fleet_graphs:REGISTRY",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    p.log_path = tmp / f"{name}.log"  # type: ignore[attr-defined]
    return p


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill every worker still alive (woken first if it was stopped)."""
    for p in procs:
        if p.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
            p.wait(timeout=10)


class SQLiteFleet:
    """An SQLite file and the store objects opened on it (``Fleet``'s ``store()`` and
    ``url``, without worker processes)."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "runs.db"
        self.url = str(self.path)
        self._stores: list[Any] = []

    def store(self) -> Any:
        s = SQLiteStore(self.path)
        self._stores.append(s)
        return s

    def close(self) -> None:
        for s in self._stores:
            s.close()


def wait_until(predicate: Any, timeout: float, what: str, step: float = 0.05) -> float:
    """Poll ``predicate`` until true; the seconds it took. Fails naming ``what``."""
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        f.close()
        drop_pg_schema(f.schema)


FLEET_BACKENDS = ["postgres", "sqlite"]
"""Every backend the queue's contract suites run against."""

AnyFleet = Fleet | SQLiteFleet


@pytest.fixture(params=FLEET_BACKENDS)
def any_fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyFleet]:
    if request.param == "postgres":
        yield request.getfixturevalue("fleet")  # skips without a server
        return
    f = SQLiteFleet(tmp_path)
    try:
        yield f
    finally:
        f.close()


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """``worker.run()`` as a task for the block; stopped (and drained) after it."""
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def until(predicate: Any, timeout: float, what: str) -> float:
    """Wait (in the event loop) until ``predicate()``; the seconds it took. Fails naming
    ``what``."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0
