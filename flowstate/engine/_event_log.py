"""The events of an execution, appended to the store's events table (``EventStore``) so
that any process can follow the run: another service process's SSE stream, the
inspector, ``flowstate`` commands.

Cheap on the hot path: an event is serialised and buffered; the buffer goes to the store
in one transaction 0.1 s after its first event (so a follower sees an event at most
~0.1 s late, and a fast run writes one batch per 0.1 s, not one per step), when 256 are
buffered, and at the end of the execution. A store error while appending is logged and
the events are dropped: they are a live view, never a reason to fail a run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from flowstate._crashpoints import quiet
from flowstate.checkpoints import EventStore
from flowstate.errors import FlowstateError

__all__ = ["EventLog", "event_log"]

log = logging.getLogger("flowstate.engine")

FLUSH_AFTER = 0.1
"""Seconds an event may wait in the buffer when no step boundary comes."""
MAX_BUFFER = 256
"""Events buffered before a flush regardless of time."""
_FLUSH_KINDS = frozenset({"run_finished"})
_NO_UPDATE = {"update"}


class EventLog:
    """Buffers one execution's events and appends them to the store in batches."""

    def __init__(self, store: EventStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.seq = store.last_event_seq(run_id)
        self._buf: list[tuple[int, str, str, float]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._timer: asyncio.TimerHandle | None = None
        self._slim = bool(getattr(store, "EVENTS_WITHOUT_UPDATES", False))
        """The store rebuilds ``node_finished.update`` from the write row (``_sql_events``)."""

    def __call__(self, event: Any) -> None:
        if threading.get_ident() != self._thread:
            # e.g. a token of a sync node running in a worker thread
            self._loop.call_soon_threadsafe(self, event)
            return
        kind = str(event.kind)
        if self._slim and kind == "node_finished":
            data = event.model_dump_json(exclude=_NO_UPDATE)
        else:
            data = event.model_dump_json()
        with self._lock:
            self.seq += 1
            self._buf.append((self.seq, kind, data, float(event.at)))
            full = len(self._buf) >= MAX_BUFFER
        if full or kind in _FLUSH_KINDS:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(FLUSH_AFTER, self.flush)

    def discard(self) -> None:
        """The process is "dying" (a simulated crash): write nothing more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            self._buf = []

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            batch, self._buf = self._buf, []
        if not batch:
            return
        try:
            with quiet():  # not a checkpoint commit: no crash point of a sweep in it
                self.store.append_events(self.run_id, batch)
        except FlowstateError as e:
            log.warning("run %s: %d events not stored: %s", self.run_id, len(batch), e)


def event_log(store: Any, run_id: str) -> EventLog | None:
    """The event log of a top-level execution of ``run_id`` (a subgraph's child run sends
    its events through its parent's), or None when the store keeps no events."""
    if "/" in run_id or not isinstance(store, EventStore):
        return None
    return EventLog(store, run_id)
