"""``InMemoryStore``'s one writer per run: leases and fencing epochs, checked under the
tables' lock."""

from __future__ import annotations

import time
from typing import Any

from flowstate.errors import RunNotFound

from ._common import check_fence, next_epoch
from ._memory_tables import Tables

__all__ = ["MemoryLeases"]


class MemoryLeases:
    """Mixin of ``InMemoryStore``: uses its ``fences``, ``_t``, ``_lock`` and ``commits``."""

    fences: dict[str, tuple[str, int]]
    _t: Tables
    _lock: Any
    commits: int

    def _fence(self, c: Any, run_id: str) -> None:
        """Raise ``LeaseLost`` unless this store object's (owner, epoch) for the run is
        still the run's. ``c`` (the tables yielded by ``write()``) is unused; the caller
        holds the lock."""
        fence = self.fences.get(run_id)
        row = self._t.runs.get(run_id)
        if fence is None:
            if row is None:  # a write for a run that is not there is an error, not a success
                raise RunNotFound(run_id)
            return
        check_fence(
            run_id,
            fence,
            None if row is None else (row.owner, row.epoch),
            cancelled="cancel" in self._t.signals.get(run_id, {}),
        )

    def acquire(self, run_id: str, owner: str, ttl: float, alive: Any = None) -> int:
        """Take the run's lease for ``owner`` (refused while another live owner holds an
        unexpired one) and return the new fencing epoch. ``alive(owner) -> bool|None`` lets
        the caller declare a holder dead before its lease expires (e.g. a dead local pid)."""
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is None:
                raise RunNotFound(run_id)
            now = time.time()
            epoch = next_epoch(run_id, owner, row.owner, row.epoch, row.lease_until, now, alive)
            row.owner, row.epoch, row.lease_until = owner, epoch, now + ttl
            self.commits += 1
        self.fences[run_id] = (owner, epoch)
        return epoch

    def heartbeat(self, run_id: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when it was taken over (the caller must stop)."""
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is None or row.owner != owner or row.epoch != epoch:
                return False
            row.lease_until = time.time() + ttl
            self.commits += 1
            return True

    def release(self, run_id: str, owner: str, epoch: int) -> None:
        """Give the lease up (only if still held by this owner and epoch)."""
        self.fences.pop(run_id, None)
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is not None and row.owner == owner and row.epoch == epoch:
                row.owner = row.lease_until = None
            self.commits += 1

    def lease(self, run_id: str) -> tuple[str | None, int, float | None]:
        """(owner, epoch, lease_until) of a run."""
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is None:
                raise RunNotFound(run_id)
            return (row.owner, row.epoch, row.lease_until)
