"""One writer per run: owner identities, liveness of local owners, the heartbeat.

A run being executed holds a lease in the store (owner, epoch, expiry). Every write for
the run checks the epoch inside its transaction (fencing), so a process that lost the run
— paused by SIGSTOP, partitioned, too slow to heartbeat — has its commits rejected. A
crashed owner on this host is detected at once by its pid; elsewhere its lease expires.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

from flowstate.checkpoints import LeaseStore

__all__ = ["DEFAULT_LEASE_TTL", "Heartbeat", "local_owner_alive", "new_owner", "retire"]

DEFAULT_LEASE_TTL = float(os.environ.get("FLOWSTATE_LEASE_TTL", "30"))
"""Seconds a lease lasts without a heartbeat; heartbeats renew it every third of that."""

_HOST = socket.gethostname()
_ACTIVE: set[str] = set()
"""Owners of executions alive in this process."""


def new_owner() -> str:
    """``host:pid:nonce`` — unique per execution, so two executions of one run in the same
    process are also kept apart."""
    owner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _ACTIVE.add(owner)
    return owner


def retire(owner: str) -> None:
    """The execution of ``owner`` has ended in this process (normally or not)."""
    _ACTIVE.discard(owner)


def local_owner_alive(owner: str) -> bool | None:
    """False if ``owner`` is a process on this host that no longer exists; None when
    this cannot be told (another host): then only the lease expiry frees the run."""
    try:
        host, pid_text, _ = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != _HOST:
        return None
    if pid == os.getpid():
        return owner in _ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Renews a lease in the background; when the lease is lost, cancels the execution."""

    def __init__(
        self,
        store: LeaseStore,
        run_id: str,
        owner: str,
        epoch: int,
        ttl: float,
        victim: asyncio.Future[Any],
    ) -> None:
        self.store, self.run_id, self.owner, self.epoch, self.ttl = store, run_id, owner, epoch, ttl
        self.victim = victim
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                ok = self.store.heartbeat(self.run_id, self.owner, self.epoch, self.ttl)
            except Exception:
                continue  # a transient store error: try again at the next beat
            if not ok:
                self.lost = True
                if not self.victim.done():
                    self.victim.cancel()
                return

    def stop(self) -> None:
        """Stop beating. Synchronous on purpose: the run's status is already final, and
        its caller must see the execution end at once, not one event-loop turn later."""
        if self._task is not None:
            self._task.cancel()
