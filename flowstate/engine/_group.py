"""Group commit: the activations that finish in the same turn of the event loop share one
transaction.

Every committed activation is still durable before anything that depends on it runs:
an activation waits for its commit before its step goes on (before the step closes,
before the next step starts), exactly as with a commit of its own. What is shared is the
fixed cost of a transaction on SQLite — ``BEGIN IMMEDIATE``, the WAL frames of the pages
it touches (the runs, writes and steps leaves are mostly the same pages for all of
them), the file locks — which is most of an activation's commit (bench W7: 50
concurrent runs; W3: a fan-out of 100 branches).

Only when something can join: a store with ``commit_many`` (SQLite) whose ``commit`` is
its own (a test double that overrides ``commit`` keeps seeing every commit), and either
several executions on that store in this process or a step with several activations. A
lone run of one-activation steps (bench W1) commits directly, without waiting a turn.

Each run's activations in a group are all-or-nothing together (a savepoint each): a run
whose fence fails, say, is left out with its error while the other runs commit.

The run events buffered by the executions on the store (``_event_log.py``) ride along in
the same transaction: with 50 runs, their own 0.1 s flushes were the most numerous
transactions of all.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowstate._crashpoints import quiet
from flowstate.checkpoints import CommitEntry, StepRecord, WriteRecord
from flowstate.errors import FlowstateError

if TYPE_CHECKING:
    from ._event_log import EventLog

log = logging.getLogger("flowstate.engine")

__all__ = ["CommitGroup", "commit_group"]


class CommitGroup:
    """The group commit of one store object in this process."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.active = 0
        """Executions on the store in this process right now."""
        self._pending: list[tuple[CommitEntry, asyncio.Future[None]]] = []
        self.logs: weakref.WeakSet[EventLog] = weakref.WeakSet()
        """The event logs of the executions on the store: drained into each group."""

    async def commit(
        self,
        run_id: str,
        writes: list[WriteRecord],
        step: StepRecord | None,
        run_fields: dict[str, Any] | None,
        hook: Callable[[Any], None] | None,
    ) -> None:
        """Commit one activation with whatever else finishes in this turn of the loop;
        returns once it is durable, or raises what kept it out."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((CommitEntry(run_id, writes, step, run_fields, hook), fut))
        await fut

    def _drain(self) -> dict[str, list[tuple[int, str, str, float]]]:
        events = {}
        for lg in list(self.logs):
            rows = lg.take()
            if rows:
                events[lg.run_id] = rows
        return events

    def flush_events(self) -> None:
        """Write the buffered events of every execution on the store in one transaction
        (a timed flush of one of their event logs)."""
        events = self._drain()
        if not events:
            return
        try:
            with quiet():  # not a checkpoint commit: no crash point of a sweep in it
                self.store.commit_many([], events)
        except FlowstateError as e:
            log.warning("%d runs' events not stored: %s", len(events), e)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        events = self._drain()
        try:
            results = self.store.commit_many([e for e, _ in batch], events)
        except BaseException as err:  # nothing was committed; a simulated crash too
            if events and isinstance(err, Exception):
                log.warning("%d runs' events not stored: %s", len(events), err)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        for (_, fut), res in zip(batch, results, strict=True):
            if fut.done():  # its activation was cancelled meanwhile
                continue
            if res is None:
                fut.set_result(None)
            else:
                fut.set_exception(res)


_groups: weakref.WeakKeyDictionary[Any, CommitGroup] = weakref.WeakKeyDictionary()


def commit_group(store: Any) -> CommitGroup | None:
    """The group commit of ``store``, or None when it cannot group commits."""
    commit_many = getattr(type(store), "commit_many", None)
    if commit_many is None:
        return None
    own = getattr(commit_many, "__qualname__", "").split(".")[0]
    if getattr(type(store).commit, "__qualname__", "").split(".")[0] not in (own, "SQLWrites"):
        return None  # ``commit`` overridden (a test double): keep every commit its own
    g = _groups.get(store)
    if g is None:
        g = _groups[store] = CommitGroup(store)
    return g
