"""The events of an execution, appended to the store's events table (``EventStore``) so
that any process can follow the run: another service process's SSE stream, the
inspector, ``flowstate`` commands.

Cheap on the hot path: an event is serialised and buffered; the buffer goes to the store
in one transaction 0.1 s after its first event (so a follower sees an event at most
~0.1 s late, and a fast run writes one batch per 0.1 s, not one per step), when 256 are
buffered, and at the end of the execution. A store error while appending is logged and
the events are dropped: they are a live view, never a reason to fail a run.

The three events of every activation (``node_started``, ``node_finished``,
``step_finished``) have a faster way in when the log is their only reader (no
``on_event``, stream or telemetry): ``node_started`` & co. write the JSON the event model
would, field for field, from the values, without building and validating the pydantic
model first; ``node_finished`` splices the update's stored JSON in as it is instead of
parsing it back. That is ~3× fewer instructions per event (``bench/instructions.py
--events both``); ``compile(events=False)`` turns the log off altogether.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json

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
        self.group: Any = None
        """The group commit this execution's commits join (``_group.py``), or None:
        then a timed flush writes the events of every run of the group in one
        transaction, not this run's alone."""
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
        self._add(kind, data, float(event.at))

    def _add(self, kind: str, data: str, at: float) -> None:
        with self._lock:
            self.seq += 1
            self._buf.append((self.seq, kind, data, at))
            full = len(self._buf) >= MAX_BUFFER
        if full or kind in _FLUSH_KINDS:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(FLUSH_AFTER, self._timed)

    def _timed(self) -> None:
        self._timer = None
        if self.group is not None:
            self.group.flush_events()
        else:
            self.flush()

    # -- the events of every activation, without their pydantic models ----------------
    # Each writes exactly the fields of its model in ``flowstate.events``, in its order
    # (tests/test_events_log.py compares them with ``model_dump_json``).

    def node_started(self, step: int, node: str, task_path: str, attempt: int) -> None:
        at = time.time()
        d = {
            "run_id": self.run_id,
            "at": at,
            "kind": "node_started",
            "step": step,
            "node": node,
            "task_path": task_path,
            "attempt": attempt,
        }
        self._add("node_started", to_json(d).decode(), at)

    def node_finished(
        self,
        step: int,
        node: str,
        task_path: str,
        update: str,
        duration_ms: float,
        usage: dict[str, int],
    ) -> None:
        """``update``: the update's stored JSON (an object), spliced in as it is."""
        at = time.time()
        head = {
            "run_id": self.run_id,
            "at": at,
            "kind": "node_finished",
            "step": step,
            "node": node,
            "task_path": task_path,
        }
        tail = {"duration_ms": duration_ms, "usage": usage}
        if self._slim:  # the store rebuilds the update from the write row
            data = f"{to_json(head).decode()[:-1]},{to_json(tail).decode()[1:]}"
        else:
            data = f'{to_json(head).decode()[:-1]},"update":{update},{to_json(tail).decode()[1:]}'
        self._add("node_finished", data, at)

    def step_finished(self, step: int, nodes: Sequence[str], next: Sequence[str]) -> None:
        at = time.time()
        d = {
            "run_id": self.run_id,
            "at": at,
            "kind": "step_finished",
            "step": step,
            "nodes": nodes,
            "next": next,
            "state": None,
        }
        self._add("step_finished", to_json(d).decode(), at)

    def take(self) -> list[tuple[int, str, str, float]]:
        """The buffered events, handed over to be written by someone else (a group
        commit writes them in its transaction, ``_group.py``)."""
        with self._lock:
            batch, self._buf = self._buf, []
        return batch

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
