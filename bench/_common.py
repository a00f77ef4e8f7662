"""Shared helpers for the peer benchmark suite (``bench/run.py``): sizes, files, timing."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

ENGINES = ("flowstate", "langgraph", "burr")


@dataclass(frozen=True)
class Sizes:
    """Workload sizes. ``FULL`` is the issue's specification, ``QUICK`` a smoke-test shrink."""

    w1_nodes: int = 200
    w2_steps: int = 100
    w2_chars: int = 1000
    w3_branches: int = 100
    w3_sleep: float = 0.01
    w4_nodes: int = 100
    w4_fail_at: int = 50
    w5_nodes: int = 100
    w5_at: int = 50
    w6_steps: int = 10_000
    w6_window: int = 1000
    w6_budget_s: float = 60.0
    w7_runs: int = 50
    w7_nodes: int = 20
    w7_procs: int = 5
    w7_runs_per_proc: int = 10
    w8_turns: int = 50
    w9_nodes: int = 10
    w9_clients: int = 50
    w9_tasks: int = 500
    w10_runs: int = 1000
    w10_sleep: float = 1.0


FULL = Sizes()
QUICK = Sizes(
    w1_nodes=20,
    w2_steps=30,
    w3_branches=20,
    w4_nodes=30,
    w4_fail_at=15,
    w5_nodes=30,
    w5_at=15,
    w6_steps=400,
    w6_window=50,
    w6_budget_s=1.5,
    w7_runs=10,
    w7_nodes=10,
    w7_procs=2,
    w7_runs_per_proc=4,
    w8_turns=10,
    w9_clients=10,
    w9_tasks=40,
    w10_runs=100,
    w10_sleep=0.2,
)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[pathlib.Path]:
    """A fresh folder on the real disk (not tmpfs) for one measurement's SQLite files."""
    base = os.environ.get("FLOWSTATE_BENCH_TMP")
    path = pathlib.Path(tempfile.mkdtemp(prefix=f"fsbench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def db_bytes(path: pathlib.Path) -> int:
    """Bytes of an SQLite database with its side files (-wal, -shm, -journal)."""
    total = 0
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = pathlib.Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total


def sqlite_mode(path: pathlib.Path) -> str:
    """The journal mode an engine left on its file, for the notes."""
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


class Clock:
    """``with Clock() as c: ...`` then ``c.s`` seconds."""

    s: float = 0.0

    def __enter__(self) -> Clock:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self._t0


def payload(i: int, chars: int) -> str:
    """A deterministic, incompressible-looking string of ``chars`` characters."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    x = (i * 2654435761 + 12345) & 0xFFFFFFFF
    out = []
    for _ in range(chars):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(alphabet[(x >> 16) % len(alphabet)])
    return "".join(out)


def is_lock_error(text: str) -> bool:
    t = text.lower()
    return "locked" in t or "busy" in t
