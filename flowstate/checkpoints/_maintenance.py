"""Retention and health: prune old runs, check and compact the database."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._protocol import CheckpointStore

__all__ = ["DamagedRow", "DoctorReport", "doctor", "parse_age", "prune"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise ValueError(
            f"'{text}' is not an age: use a number and a unit, e.g. 30d, 12h, 90m, 45s, 2w"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def prune(
    store: Any,
    *,
    older_than: float,
    status: str | None = None,
    dry_run: bool = False,
    now: float | None = None,
    thread_id: str | None = None,
    whole_threads: bool = False,
) -> list[str]:
    """Delete runs created more than ``older_than`` seconds ago (optionally only with
    ``status``), with everything that hangs off them: writes, steps, effects, interrupts,
    attempts, signals and their subgraph child runs. Runs that are ``running`` are kept
    unless ``status="running"`` is asked for explicitly. Returns the deleted run ids.

    Threads: the latest turn of a thread is always kept (the thread goes on from its
    state), unless ``whole_threads``: then a thread whose latest turn is older than the
    age is deleted entirely, and threads with a newer turn are left whole. ``thread_id``
    limits the prune to that thread's turns."""
    cutoff = (now if now is not None else time.time()) - older_than
    if thread_id is not None or whole_threads:
        return _prune_threads(store, cutoff, status, dry_run, thread_id, whole_threads)
    victims: list[str] = []
    seen: set[str] = set()
    latest: dict[str, str] = {}
    while True:
        batch = store.list_runs(status=status, before=cutoff, limit=500)
        batch = [r for r in batch if r.id not in seen and (status or r.status != "running")]
        if not batch:
            break
        for r in batch:
            seen.add(r.id)
            if r.thread_id is not None:
                if r.thread_id not in latest:
                    latest[r.thread_id] = store.thread_runs(r.thread_id)[-1].id
                if latest[r.thread_id] == r.id:
                    continue  # a thread's latest turn: the thread continues from it
            victims.append(r.id)
            if not dry_run:
                store.delete_run(r.id)
        if dry_run:
            break
    return victims


def _prune_threads(
    store: Any,
    cutoff: float,
    status: str | None,
    dry_run: bool,
    thread_id: str | None,
    whole: bool,
) -> list[str]:
    if thread_id is not None:
        ids = [thread_id]
    else:
        ids = [t.thread_id for t in store.threads(limit=2**31 - 1, before=cutoff)]
    victims: list[str] = []
    for tid in ids:
        turns = store.thread_runs(tid)
        if not turns:
            continue
        if whole:
            if turns[-1].created_at >= cutoff:
                continue
            chosen = [r for r in turns if status is None or r.status == status]
            if len(chosen) < len(turns) or any(
                r.status == "running" and status != "running" for r in turns
            ):
                continue  # a thread is deleted whole or not at all
        else:
            chosen = [
                r
                for r in turns[:-1]
                if r.created_at < cutoff
                and (status is None or r.status == status)
                and (status or r.status != "running")
            ]
        for r in chosen:
            victims.append(r.id)
            if not dry_run:
                store.delete_run(r.id)
    return victims


@dataclass
class DamagedRow:
    """A stored row that fails what a read checks."""

    table: str
    run_id: str
    step: int | None
    problem: str


@dataclass
class DoctorReport:
    """What ``doctor`` found. ``ok`` only when SQLite's check and every row pass."""

    path: str
    """Where the store keeps its rows."""
    integrity: str
    """The database's own check: ``"ok"`` or its problems."""
    file_bytes: int
    """Bytes on disk (database, WAL and shared-memory files); 0 for a server database."""
    rows: dict[str, int] = field(default_factory=dict)
    largest_runs: list[tuple[str, int]] = field(default_factory=list)
    damaged: list[DamagedRow] = field(default_factory=list)
    """Rows that fail their hash, schema or JSON check (what reading them would raise)."""
    key_ids: dict[str, int] = field(default_factory=dict)
    """Encryption at rest: sealed values per key id (empty: nothing is encrypted)."""
    vacuumed_bytes: int | None = None
    """Bytes freed by ``vacuum``: the size on disk before minus after (None: not run)."""

    @property
    def damaged_runs(self) -> list[str]:
        """Runs with at least one damaged row, in order of first appearance."""
        return list(dict.fromkeys(d.run_id for d in self.damaged))

    @property
    def ok(self) -> bool:
        return self.integrity == "ok" and not self.damaged


def _disk_bytes(store: Any) -> int:
    import os

    path = getattr(store, "path", None)
    if path is None or getattr(store, "memory", False):
        return 0
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = f"{path}{suffix}"
        if os.path.exists(p):
            total += os.path.getsize(p)
    return total


def doctor(store: CheckpointStore, *, vacuum: bool = False, top: int = 10) -> DoctorReport:
    """Check a store as the engine reads it: the database's own integrity check, then every
    row's hash, schema and JSON in every table (``damaged``); rows per table and the
    largest runs. ``vacuum`` compacts an SQLite file (only when nothing is damaged) and
    reports the bytes it freed."""
    from flowstate.errors import StoreError

    from ._open import describe_store
    from ._protocol import RowScanStore

    report = DoctorReport(
        path=describe_store(store), integrity=store.integrity_check(), file_bytes=_disk_bytes(store)
    )
    try:  # a damaged file may not even be countable: the integrity result says why
        if isinstance(store, RowScanStore):
            report.damaged = [DamagedRow(*d) for d in store.damaged_rows()]
        report.rows = store.table_sizes()
        report.largest_runs = store.largest_runs(top)
        key_ids = getattr(store, "key_ids", None)
        if key_ids is not None:
            report.key_ids = key_ids()
    except StoreError:
        if report.integrity == "ok":
            raise
    if vacuum and report.integrity == "ok" and isinstance(store, RowScanStore):
        before = _disk_bytes(store)
        store.vacuum()
        after = _disk_bytes(store)
        report.file_bytes = after
        report.vacuumed_bytes = before - after
    return report
