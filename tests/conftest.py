"""Shared fixtures: SQLite files on disk, a store that crashes after k commits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowstate.checkpoints import SQLiteStore


class SimulatedCrash(BaseException):
    """Stands in for a process dying: a BaseException, so the engine records nothing."""


class CrashingStore(SQLiteStore):
    """A real SQLite store that "dies" right after its k-th activation commit."""

    def __init__(self, path: str | Path, crash_after: int | None = None) -> None:
        super().__init__(path)
        self.crash_after = crash_after
        self.activation_commits = 0

    def commit(self, run_id, *, writes=(), effects=(), step=None, run_fields=None, hook=None):  # type: ignore[no-untyped-def]
        super().commit(
            run_id, writes=writes, effects=effects, step=step, run_fields=run_fields, hook=hook
        )
        if writes:
            self.activation_commits += 1
            if self.crash_after is not None and self.activation_commits >= self.crash_after:
                raise SimulatedCrash(f"crash after {self.activation_commits} commits")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def fast_tmp(tmp_path: Path) -> Path:
    """A scratch dir on tmpfs when there is one: for tests that create hundreds of
    databases, where fsync latency of the real disk would dominate. Crash tests that
    kill real processes use tmp_path (the real disk) instead."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="flowstate-test-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
