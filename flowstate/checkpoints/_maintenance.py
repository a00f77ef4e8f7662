"""Retention and health: prune old runs, check and compact the database."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flowstate.errors import ConfigError

if TYPE_CHECKING:
    from ._protocol import CheckpointStore
    from ._sqlite import SQLiteStore

__all__ = ["DoctorReport", "doctor", "parse_age", "prune"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise ConfigError(
            f"'{text}' is not an age: use a number and a unit, e.g. 30d, 12h, 90m, 45s, 2w"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def prune(
    store: CheckpointStore,
    *,
    older_than: float,
    status: str | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> list[str]:
    """Delete runs created more than ``older_than`` seconds ago (optionally only with
    ``status``), with everything that hangs off them: writes, steps, effects, interrupts,
    attempts, signals and their subgraph child runs. Runs that are ``running`` are kept
    unless ``status="running"`` is asked for explicitly. Returns the deleted run ids."""
    cutoff = (now if now is not None else time.time()) - older_than
    victims: list[str] = []
    while True:
        batch = store.list_runs(status=status, before=cutoff, limit=500)
        batch = [r for r in batch if r.id not in victims and (status or r.status != "running")]
        if not batch:
            break
        for r in batch:
            victims.append(r.id)
            if not dry_run:
                store.delete_run(r.id)
        if dry_run:
            break
    return victims


@dataclass
class DoctorReport:
    path: str
    integrity: str
    file_bytes: int
    rows: dict[str, int] = field(default_factory=dict)
    largest_runs: list[tuple[str, int]] = field(default_factory=list)
    vacuumed_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.integrity == "ok"


def doctor(store: SQLiteStore, *, vacuum: bool = False, top: int = 10) -> DoctorReport:
    """SQLite's integrity check, rows per table, the largest runs; VACUUM on request."""
    import os

    def size() -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = f"{store.path}{suffix}"
            if os.path.exists(p):
                total += os.path.getsize(p)
        return total

    report = DoctorReport(
        path=str(store.path), integrity=store.integrity_check(), file_bytes=size()
    )
    from flowstate.errors import StoreError

    try:  # a damaged file may not even be countable: the integrity result says why
        report.rows = store.table_sizes()
        report.largest_runs = store.largest_runs(top)
    except StoreError:
        if report.ok:
            raise
    if vacuum and report.ok:
        with store._lock:
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.conn.execute("VACUUM")
        report.vacuumed_bytes = size()
    return report
