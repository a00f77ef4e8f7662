"""Following a run that another process executes: its events come from the store's
events table (``EventStore``), woken by ``LISTEN``/``NOTIFY`` on a store that has it
(``NotifyStore``: PostgreSQL) and by short polling otherwise (SQLite).

One listening connection per service process, whatever the number of subscribers: a
thread waits on it and wakes the subscribers of the run named in each notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from flowstate import events as ev
from flowstate.checkpoints import EventStore, NotifyStore
from flowstate.errors import FlowstateError

from ._stream import sse, sse_comment

__all__ = ["POLL_SECONDS", "RunFollower"]

log = logging.getLogger("flowstate.service")

POLL_SECONDS = 0.2
"""How often a subscriber re-reads the store when no notification can wake it."""
FINISH_GRACE = 3.0
"""Seconds to wait for a finished run's last events (they are written just after its
status) before ending the stream with its status alone."""


class RunFollower:
    """Streams a run's stored events as server-sent events, for any process's runs."""

    def __init__(self, store: Any, keepalive: float) -> None:
        self.store = store
        self.keepalive = keepalive
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- wake-ups ------------------------------------------------------------------------

    def _start_listener(self) -> None:
        if self._thread is not None or not isinstance(self.store, NotifyStore):
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="flowstate-events", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        listener: Any = None
        while not self._stop.is_set():
            try:
                if listener is None:
                    listener = self.store.listen("events")
                    self._wake(None)  # anything sent before we listened: re-read
                for notice in listener.wait(1.0):
                    self._wake(None if notice.missed else notice.payload)
            except Exception as e:  # an unreachable server: subscribers poll meanwhile
                log.warning("events listener: %s; retrying", e)
                if listener is not None:
                    with contextlib.suppress(Exception):
                        listener.close()
                listener = None
                self._stop.wait(1.0)
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    def _wake(self, run_id: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._set, run_id)

    def _set(self, run_id: str | None) -> None:
        if run_id is None:
            targets = [e for es in self._waiters.values() for e in es]
        else:
            targets = list(self._waiters.get(run_id, ()))
        for e in targets:
            e.set()

    async def _wait(self, run_id: str, timeout: float) -> None:
        if self._thread is None:
            await asyncio.sleep(min(timeout, POLL_SECONDS))
            return
        woken = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(woken)
        try:
            await asyncio.wait_for(woken.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            waiting = self._waiters.get(run_id)
            if waiting is not None:
                waiting.discard(woken)
                if not waiting:
                    del self._waiters[run_id]

    def close(self) -> None:
        self._stop.set()

    # -- the stream ------------------------------------------------------------------------

    async def stream(
        self,
        run_id: str,
        last_event_id: str | None,
        closing: Any = lambda: False,
        pick: Callable[[str, str], str | None] | None = None,
    ) -> AsyncIterator[bytes]:
        """Every stored event of the run after ``Last-Event-ID`` (its ``seq``), ending once
        the run is no longer running or queued and its last event is its run_finished; a
        run with no stored events (finished before events were kept) replays its final
        status only. ``pick`` selects and rewrites events (``?mode=``): None skips one."""
        store = self.store
        if not isinstance(store, EventStore):
            return
        self._start_listener()
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        sent = after > 0
        finished = False
        quiet_since = time.monotonic()
        terminal_since: float | None = None
        while True:
            try:
                rows = store.events_since(run_id, after)
                run = None if rows else store.find_run(run_id)
            except FlowstateError as e:
                # a live view outlives a passing store fault (a pool timeout, a restart):
                # the stream waits and reads again instead of ending mid-run
                log.warning("following run %s: %s; retrying", run_id, e)
                await asyncio.sleep(POLL_SECONDS)
                continue
            for seq, kind, data, _ in rows:
                picked = data if pick is None else pick(kind, data)
                if picked is not None:
                    yield sse(kind, picked, str(seq))
                after, sent, quiet_since = seq, True, time.monotonic()
                finished = kind == "run_finished" and _own(data, run_id)
            if rows:
                continue
            if run is None:
                return
            if run.status in ("running", "queued") and not closing():
                terminal_since = None
            else:
                if finished or closing():
                    return
                now = time.monotonic()
                terminal_since = terminal_since or now
                if not sent or now - terminal_since >= FINISH_GRACE:
                    final = ev.RunFinished(
                        run_id=run_id, status=run.status, reason=run.error, at=run.updated_at
                    )
                    yield sse("run_finished", final.model_dump_json(), str(after))
                    return
            await self._wait(run_id, 1.0)
            if time.monotonic() - quiet_since >= self.keepalive:
                quiet_since = time.monotonic()
                yield sse_comment("waiting")


def _own(data: str, run_id: str) -> bool:
    """Whether an event's JSON is of ``run_id`` itself (not of a subgraph's child run)."""
    try:
        return json.loads(data).get("run_id") == run_id
    except ValueError:
        return False
