"""Live event logs of the executions this server runs, and their server-sent-event form.

Events are a live view, not the durable record (that is the store): each execution of a
task (its first run, each resume) gets an ``EventLog`` holding the engine's typed events
as JSON, so a subscriber that arrives late still gets every event of the execution in
order, ending with ``run_finished``. Logs are bounded in length and in number; a task
whose log is gone (an old task, or one finished before a restart) replays only its final
status.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterator
from typing import Any

__all__ = ["EventLog", "dump_event", "sse", "sse_comment"]

MAX_EVENTS = 20_000
"""Events kept per execution; a subscriber that falls further behind skips the oldest."""

_epochs = itertools.count(1)


class EventLog:
    """The events of one execution, with a broadcast wake-up for subscribers."""

    def __init__(self, run_id: str, max_events: int = MAX_EVENTS) -> None:
        self.run_id = run_id
        self.epoch = next(_epochs)
        """Distinguishes executions in SSE ids (``epoch:index``) for ``Last-Event-ID``."""
        self._events: deque[tuple[str, str]] = deque(maxlen=max_events)
        self._base = 0
        """Index of the oldest event still held."""
        self.done = False
        self._changed = asyncio.Event()

    @property
    def end(self) -> int:
        return self._base + len(self._events)

    def append(self, kind: str, data: str, *, final: bool = False) -> None:
        """Add an event; ``final`` marks the task's own run_finished (a subgraph's child
        run finishing is not the end)."""
        if self.done:
            return
        if len(self._events) == self._events.maxlen:
            self._base += 1
        self._events.append((kind, data))
        if final:
            self.done = True
        self._changed.set()
        self._changed = asyncio.Event()

    def since(self, index: int) -> Iterator[tuple[int, str, str]]:
        start = max(index, self._base)
        for i in range(start, self.end):
            kind, data = self._events[i - self._base]
            yield i, kind, data

    async def wait(self, index: int, timeout: float) -> None:
        """Until there is an event at ``index`` or beyond, the log is done, or timeout."""
        if index < self.end or self.done:
            return
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            pass

    def start_index(self, last_event_id: str | None) -> int:
        """Where a subscriber starts: after ``Last-Event-ID`` if it names this execution."""
        if last_event_id:
            epoch, _, idx = last_event_id.partition(":")
            if epoch == str(self.epoch) and idx.isdigit():
                return int(idx) + 1
        return 0


def sse(kind: str, data: str, event_id: str | None = None) -> bytes:
    """One server-sent event. ``data`` is compact JSON (no newlines)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n".encode()


def sse_comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


def dump_event(event: Any) -> tuple[str, str]:
    return str(event.kind), event.model_dump_json()
