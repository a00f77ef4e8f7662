"""The one clock every durable time in flowstate is read from: timers (``ctx.sleep``),
interrupt deadlines, schedule firings and the timestamps written to stored rows.

The clock is process-wide and injectable: ``set_clock(TestClock(...))`` (or ``with
use_clock(...)``) makes every such read come from a clock a test moves by hand, so tests
move time instead of sleeping. A ``TestClock`` given a ``path`` keeps its time in that file,
and a child process started with ``FLOWSTATE_CLOCK=<path>`` in its environment reads the
same time: a test can advance the clock of a process it started.

What stays on the real clock, on purpose: run leases and their heartbeats, signal polling,
retry back-off and telemetry durations. They measure the process (is its owner alive? how
long did a call take?), not the workflow, and a lease must expire in real time whatever a
test does to workflow time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from flowstate.errors import TimerError

__all__ = [
    "Clock",
    "SystemClock",
    "TestClock",
    "get_clock",
    "set_clock",
    "to_timestamp",
    "use_clock",
]


@runtime_checkable
class Clock(Protocol):
    """Wall time in seconds since the epoch, and a way to wait for it."""

    def now(self) -> float:
        """Seconds since the epoch (UTC), like ``time.time()``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``now()`` has moved on by ``seconds``."""
        ...


class SystemClock:
    """The real clock: ``time.time()`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class TestClock:
    """A clock that only moves when told to: ``advance(seconds)`` or ``set(t)``.

    ``sleep`` waits until the clock has been moved past its end (polling every few
    milliseconds, so another thread or, with ``path``, another process can move it).
    With ``path``, the time is kept in that file: every ``TestClock`` on the same path, in
    any process, reads the same time (``FLOWSTATE_CLOCK=<path>`` gives a child process one).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, start: float | datetime = 1_800_000_000.0, *, path: str | None = None):
        self._lock = threading.Lock()
        self._path = Path(path) if path is not None else None
        self._t = to_timestamp(start)
        if self._path is not None:
            if self._path.exists() and self._path.read_text().strip():
                self._t = float(self._path.read_text())
            else:
                self._write(self._t)

    def _write(self, t: float) -> None:
        assert self._path is not None
        tmp = self._path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(repr(t))
        tmp.replace(self._path)  # atomic: a reader never sees half a number

    def now(self) -> float:
        if self._path is not None:
            with contextlib.suppress(OSError, ValueError):
                self._t = float(self._path.read_text())
        return self._t

    def set(self, t: float | datetime) -> None:
        """Move the clock to ``t`` (never backwards)."""
        with self._lock:
            new = max(self.now(), to_timestamp(t))
            self._t = new
            if self._path is not None:
                self._write(new)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.set(self.now() + seconds)

    async def sleep(self, seconds: float) -> None:
        end = self.now() + max(0.0, seconds)
        while self.now() < end:
            await asyncio.sleep(0.005)

    def __repr__(self) -> str:
        return f"TestClock({self.now()!r})"


_clock: Clock = SystemClock()


def get_clock() -> Clock:
    """The clock of this process (``SystemClock`` unless one was set)."""
    return _clock


def set_clock(clock: Clock | None) -> Clock:
    """Make ``clock`` the clock of this process (``None``: the system clock again);
    returns the clock it replaces."""
    global _clock
    old = _clock
    _clock = clock if clock is not None else SystemClock()
    return old


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """``with use_clock(TestClock()) as clock: ...``: ``clock`` is the clock inside."""
    old = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(old)


def to_timestamp(when: float | int | datetime) -> float:
    """Seconds since the epoch of ``when``: a number as is, an aware datetime converted;
    a naive datetime is refused (its zone would be a guess)."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise TimerError(
                f"naive datetime {when.isoformat()} has no time zone: pass an aware one, "
                "e.g. datetime(..., tzinfo=ZoneInfo('Europe/Paris')) or datetime.now(UTC)"
            )
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TimerError(
            f"{when!r} is not a time: pass seconds since the epoch or an aware datetime"
        )
    return float(when)


def iso(t: float) -> str:
    """``t`` as an ISO 8601 UTC string (for messages and views)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


if os.environ.get("FLOWSTATE_CLOCK"):  # a test moves this process's time through a file
    _clock = TestClock(path=os.environ["FLOWSTATE_CLOCK"])
