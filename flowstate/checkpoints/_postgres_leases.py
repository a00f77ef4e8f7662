"""``PostgresStore``'s one writer per run: leases and fencing epochs on the run row.

The run row is the lock: ``acquire`` takes it ``FOR UPDATE`` and a fenced write takes it
``FOR NO KEY UPDATE`` (the lock its own UPDATE of the run would take), so a takeover and a
stale owner's commit are serialised on the row, and a commit that passed its fence check
lands before the takeover that would have refused it.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from flowstate.errors import RunNotFound

from ._common import check_fence, lease_tuple, next_epoch

__all__ = ["PostgresLeases"]


class PostgresLeases:
    """Mixin of ``PostgresStore``: uses its ``fences``, ``_q``, ``write`` and ``_read``."""

    fences: dict[str, tuple[str, int]]
    _q: Any
    write: Any
    _read: Any

    def _fence(self, c: psycopg.Connection[Any], run_id: str) -> None:
        fence = self.fences.get(run_id)
        row = c.execute(
            self._q(
                'SELECT "owner", "epoch", EXISTS (SELECT 1 FROM {signals} WHERE "run_id" = %s '
                "AND \"kind\" = 'cancel') FROM {runs} WHERE \"id\" = %s FOR NO KEY UPDATE"
            ),
            [run_id, run_id],
        ).fetchone()
        if fence is None:
            if row is None:  # a write for a run that is not there is an error, not a success
                raise RunNotFound(run_id)
            return
        check_fence(run_id, fence, row, cancelled=bool(row and row[2]))

    def acquire(self, run_id: str, owner: str, ttl: float, alive: Any = None) -> int:
        """Take the run's lease for ``owner`` (refused while another live owner holds an
        unexpired one) and return the new fencing epoch. ``alive(owner) -> bool|None`` lets
        the caller declare a holder dead before its lease expires (e.g. a dead local pid)."""
        with self.write() as c:
            row = c.execute(
                self._q(
                    'SELECT "owner", "epoch", "lease_until" FROM {runs} WHERE "id" = %s FOR UPDATE'
                ),
                [run_id],
            ).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            now = time.time()
            epoch = next_epoch(run_id, owner, row[0], row[1], row[2], now, alive)
            c.execute(
                self._q(
                    'UPDATE {runs} SET "owner" = %s, "epoch" = %s, "lease_until" = %s '
                    'WHERE "id" = %s'
                ),
                [owner, epoch, now + ttl, run_id],
            )
        self.fences[run_id] = (owner, epoch)
        return epoch

    def heartbeat(self, run_id: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when it was taken over (the caller must stop)."""
        with self.write() as c:
            cur = c.execute(
                self._q(
                    'UPDATE {runs} SET "lease_until" = %s '
                    'WHERE "id" = %s AND "owner" = %s AND "epoch" = %s'
                ),
                [time.time() + ttl, run_id, owner, epoch],
            )
            return cur.rowcount == 1

    def release(self, run_id: str, owner: str, epoch: int) -> None:
        """Give the lease up (only if still held by this owner and epoch)."""
        self.fences.pop(run_id, None)
        with self.write() as c:
            c.execute(
                self._q(
                    'UPDATE {runs} SET "owner" = NULL, "lease_until" = NULL '
                    'WHERE "id" = %s AND "owner" = %s AND "epoch" = %s'
                ),
                [run_id, owner, epoch],
            )

    def lease(self, run_id: str) -> tuple[str | None, int, float | None]:
        """(owner, epoch, lease_until) of a run."""
        rows = self._read(
            self._q('SELECT "owner", "epoch", "lease_until" FROM {runs} WHERE "id" = %s'),
            [run_id],
        )
        if not rows:
            raise RunNotFound(run_id)
        return lease_tuple(rows[0])
