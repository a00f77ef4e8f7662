"""One writer per run on the SQL stores: leases and fencing epochs on the run row, written
once for ``SQLiteStore`` and ``PostgresStore``.

The statements are written in one neutral form (``?`` parameters, quoted identifiers,
``{runs}`` for the table) that each store renders with ``_stmt``; they differ only in how
the run row is locked, ``_LOCK_FOR_TAKEOVER`` and ``_LOCK_FOR_FENCE``:

- SQLite has one write lock, so the check inside a ``BEGIN IMMEDIATE`` transaction is
  already serialised with every takeover: no row lock.
- PostgreSQL locks the run row: ``acquire`` takes it ``FOR UPDATE`` and a fenced write
  ``FOR NO KEY UPDATE`` (the lock its own UPDATE of the run would take), so a takeover and
  a stale owner's commit are serialised on the row, and a commit that passed its fence
  check lands before the takeover that would have refused it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from flowstate.errors import RunNotFound

from ._common import check_fence, lease_tuple, next_epoch

__all__ = ["SQLLeases"]


class SQLLeases:
    """The lease half of ``SQLiteStore`` and ``PostgresStore``; uses their ``fences``,
    ``write``, ``_read`` and ``_stmt``."""

    _LOCK_FOR_TAKEOVER = ""
    """Appended to the SELECT of the run row in ``acquire``."""
    _LOCK_FOR_FENCE = ""
    """Appended to the SELECT of the run row in a fenced write."""

    fences: dict[str, tuple[str, int]]
    write: Callable[[], AbstractContextManager[Any]]
    _read: Callable[..., list[Any]]
    _stmt: Callable[[str], Any]

    def _fence(self, c: Any, run_id: str) -> None:
        """Inside a write transaction: ``LeaseLost`` unless this store object's fence on
        the run (if it has one) is still the run's owner and epoch, ``CancelledElsewhere``
        once another process's cancel is pending, and ``RunNotFound`` for an unfenced
        write to a run that is not there (an error, not a success)."""
        fence = self.fences.get(run_id)
        row = c.execute(
            self._stmt(
                'SELECT "owner", "epoch", EXISTS (SELECT 1 FROM {signals} WHERE "run_id" = ? '
                """AND "kind" = 'cancel') FROM {runs} WHERE "id" = ?""" + self._LOCK_FOR_FENCE
            ),
            [run_id, run_id],
        ).fetchone()
        if fence is None:
            if row is None:
                raise RunNotFound(run_id)
            return
        check_fence(run_id, fence, row, cancelled=bool(row and row[2]))

    def acquire(self, run_id: str, owner: str, ttl: float, alive: Any = None) -> int:
        """Take the run's lease for ``owner`` (refused while another live owner holds an
        unexpired one) and return the new fencing epoch. ``alive(owner) -> bool|None`` lets
        the caller declare a holder dead before its lease expires (e.g. a dead local pid)."""
        with self.write() as c:
            row = c.execute(
                self._stmt(
                    'SELECT "owner", "epoch", "lease_until" FROM {runs} WHERE "id" = ?'
                    + self._LOCK_FOR_TAKEOVER
                ),
                [run_id],
            ).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            now = time.time()
            epoch = next_epoch(run_id, owner, row[0], row[1], row[2], now, alive)
            c.execute(
                self._stmt(
                    'UPDATE {runs} SET "owner" = ?, "epoch" = ?, "lease_until" = ? WHERE "id" = ?'
                ),
                [owner, epoch, now + ttl, run_id],
            )
        self.fences[run_id] = (owner, epoch)
        return epoch

    def heartbeat(self, run_id: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when it was taken over (the caller must stop)."""
        with self.write() as c:
            cur = c.execute(
                self._stmt(
                    'UPDATE {runs} SET "lease_until" = ? '
                    'WHERE "id" = ? AND "owner" = ? AND "epoch" = ?'
                ),
                [time.time() + ttl, run_id, owner, epoch],
            )
            return bool(cur.rowcount == 1)

    def release(self, run_id: str, owner: str, epoch: int) -> None:
        """Give the lease up (only if still held by this owner and epoch)."""
        self.fences.pop(run_id, None)
        with self.write() as c:
            c.execute(
                self._stmt(
                    'UPDATE {runs} SET "owner" = NULL, "lease_until" = NULL '
                    'WHERE "id" = ? AND "owner" = ? AND "epoch" = ?'
                ),
                [run_id, owner, epoch],
            )

    def lease(self, run_id: str) -> tuple[str | None, int, float | None]:
        """(owner, epoch, lease_until) of a run."""
        rows = self._read(
            self._stmt('SELECT "owner", "epoch", "lease_until" FROM {runs} WHERE "id" = ?'),
            [run_id],
        )
        if not rows:
            raise RunNotFound(run_id)
        return lease_tuple(rows[0])
