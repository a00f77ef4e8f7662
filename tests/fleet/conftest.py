"""Fixtures of the fleet tests: a fresh Postgres schema per test (dropped after it), the
URL workers are started with, and real worker processes (``flowstate worker``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
        log = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowstate.cli",
                "worker",
                "--db",
                self.url,
                "--graphs",
                "tests.fleet.fleet_graphs:REGISTRY",
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        p.log_path = self.tmp / f"{name}.log"  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with_cont = [signal.SIGCONT, signal.SIGKILL]
                for sig in with_cont:
                    try:
                        p.send_signal(sig)
                    except ProcessLookupError:
                        pass
                p.wait(timeout=10)
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
