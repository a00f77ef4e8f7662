"""``SQLiteStore``'s one writer per run: leases and fencing epochs on the run row.

SQLite has one write lock, so the check inside a ``BEGIN IMMEDIATE`` transaction is
serialised with every takeover."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from flowstate.errors import RunNotFound

from ._common import check_fence, lease_tuple, next_epoch

__all__ = ["SQLiteLeases"]


class SQLiteLeases:
    """Mixin of ``SQLiteStore``: uses its ``fences``, ``write`` and ``_read``."""

    fences: dict[str, tuple[str, int]]
    write: Any
    _read: Any

    def _fence(self, c: sqlite3.Connection, run_id: str) -> None:
        fence = self.fences.get(run_id)
        if fence is None:
            return
        row = c.execute("SELECT owner, epoch FROM runs WHERE id = ?", [run_id]).fetchone()
        check_fence(run_id, fence, row)

    def acquire(self, run_id: str, owner: str, ttl: float, alive: Any = None) -> int:
        """Take the run's lease for ``owner`` (refused while another live owner holds an
        unexpired one) and return the new fencing epoch. ``alive(owner) -> bool|None`` lets
        the caller declare a holder dead before its lease expires (e.g. a dead local pid)."""
        with self.write() as c:
            row = c.execute(
                "SELECT owner, epoch, lease_until FROM runs WHERE id = ?", [run_id]
            ).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            now = time.time()
            epoch = next_epoch(run_id, owner, row[0], row[1], row[2], now, alive)
            c.execute(
                "UPDATE runs SET owner = ?, epoch = ?, lease_until = ? WHERE id = ?",
                [owner, epoch, now + ttl, run_id],
            )
        self.fences[run_id] = (owner, epoch)
        return epoch

    def heartbeat(self, run_id: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when it was taken over (the caller must stop)."""
        with self.write() as c:
            cur = c.execute(
                "UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ? AND epoch = ?",
                [time.time() + ttl, run_id, owner, epoch],
            )
            return cur.rowcount == 1

    def release(self, run_id: str, owner: str, epoch: int) -> None:
        """Give the lease up (only if still held by this owner and epoch)."""
        self.fences.pop(run_id, None)
        with self.write() as c:
            c.execute(
                "UPDATE runs SET owner = NULL, lease_until = NULL "
                "WHERE id = ? AND owner = ? AND epoch = ?",
                [run_id, owner, epoch],
            )

    def lease(self, run_id: str) -> tuple[str | None, int, float | None]:
        """(owner, epoch, lease_until) of a run."""
        rows = self._read("SELECT owner, epoch, lease_until FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise RunNotFound(run_id)
        return lease_tuple(rows[0])
