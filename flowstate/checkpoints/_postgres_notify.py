"""``LISTEN``/``NOTIFY`` on a ``PostgresStore``: a dedicated listening connection
(``store.listen(...)``) and ``store.notify(...)``, which inside a write transaction is
delivered when that transaction commits (PostgreSQL's own rule), never before and never
if it rolls back.

Channels are per schema: ``store.listen("events")`` on schema ``a`` does not hear
``notify("events")`` on schema ``b``. A notification is a wake-up, not a message queue:
one sent while no listener is connected (a restart, a reconnect) is lost, so a listener
re-reads what it waits for after every wake-up, and ``wait`` reports a reconnect as a
notice with ``missed=True``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from flowstate.errors import ConfigError, StoreIOError

from ._postgres_schema import channel_name

__all__ = ["EVENTS_CHANNEL", "Notice", "PostgresListener", "PostgresNotify", "channel_name"]

EVENTS_CHANNEL = "events"
"""Notified (payload: the run id) when events of a run are appended."""


@dataclass(frozen=True)
class Notice:
    """One wake-up: the ``channel`` as given to ``listen`` and the ``payload`` sent.
    ``missed=True`` (payload ``""``): the connection was lost and re-opened, so
    notifications may have been missed; re-read the state waited on."""

    channel: str
    payload: str
    missed: bool = False


class PostgresListener:
    """A dedicated connection ``LISTEN``-ing on some channels of one store's schema.

    ``wait(timeout)`` blocks the calling thread until at least one notification arrives
    (returns all pending ones) or ``timeout`` seconds pass (returns ``[]``). A lost
    connection is re-opened inside ``wait`` (retrying until the timeout), and reported
    as one ``Notice(channel, "", missed=True)`` per channel. Use from one thread; close it
    (or use ``with``) when done. For asyncio, run ``wait`` in a thread
    (``await asyncio.to_thread(listener.wait, 1.0)``).
    """

    def __init__(
        self, dsn: str, connect_kwargs: dict[str, Any], schema: str, channels: Sequence[str]
    ) -> None:
        if not channels:
            raise ConfigError("listen() needs at least one channel")
        self._dsn = dsn
        self._kwargs = connect_kwargs
        self._names = {channel_name(schema, ch): ch for ch in channels}
        self.channels = tuple(channels)
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self.reconnects = 0
        """How many times the connection was re-opened (for tests and monitoring)."""
        self._connect()

    def _connect(self) -> None:
        try:
            c = psycopg.connect(self._dsn, **self._kwargs)
        except psycopg.Error as e:
            raise StoreIOError(f"cannot open a LISTEN connection: {e}") from e
        try:
            for name in self._names:
                c.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
        except psycopg.Error as e:
            with contextlib.suppress(Exception):
                c.close()
            raise StoreIOError(f"cannot LISTEN: {e}") from e
        self._conn = c

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (None while disconnected)."""
        c = self._conn
        return None if c is None or c.closed else c.info.backend_pid

    def wait(self, timeout: float) -> list[Notice]:
        if self._closed:
            raise StoreIOError("this listener is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            c = self._conn
            try:
                if c is None or c.closed or c.broken:
                    self._reconnect(c)
                    return [Notice(ch, "", missed=True) for ch in self.channels]
                left = max(0.0, deadline - time.monotonic())
                out = self._collect(c, left)
                return out
            except (psycopg.OperationalError, StoreIOError):
                self._conn = None
                if time.monotonic() >= deadline:
                    return []
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _collect(self, c: psycopg.Connection[Any], timeout: float) -> list[Notice]:
        out = [self._notice(n) for n in c.notifies(timeout=timeout, stop_after=1)]
        if out:  # and whatever else has arrived meanwhile, without waiting
            out += [self._notice(n) for n in c.notifies(timeout=0)]
        return out

    def _notice(self, n: psycopg.Notify) -> Notice:
        return Notice(self._names.get(n.channel, n.channel), n.payload)

    def _reconnect(self, old: psycopg.Connection[Any] | None) -> None:
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        self._conn = None
        self._connect()
        self.reconnects += 1

    def close(self) -> None:
        self._closed = True
        c, self._conn = self._conn, None
        if c is not None:
            with contextlib.suppress(Exception):
                c.close()

    def __enter__(self) -> PostgresListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresNotify:
    """Mixin of ``PostgresStore``: ``listen`` and ``notify``."""

    dsn: str
    schema: str
    _connect_kwargs: dict[str, Any]
    write: Any

    def listen(self, *channels: str) -> PostgresListener:
        """A dedicated connection listening on ``channels`` of this store's schema (not a
        connection of the pool: it stays open, idle, for as long as you wait)."""
        return PostgresListener(self.dsn, self._connect_kwargs, self.schema, channels)

    def notify(self, channel: str, payload: str = "") -> None:
        """Wake the listeners of ``channel`` (payload at most ~7900 bytes). Inside a
        ``write()`` transaction on this thread it is sent when that commits; otherwise at
        once (a transaction of its own)."""
        if len(payload.encode()) > 7900:
            raise ConfigError(
                f"a notification payload is at most 7900 bytes, not {len(payload.encode())}: "
                "send a key and let listeners read the rest from the store"
            )
        with self.write() as c:
            c.execute("SELECT pg_notify(%s, %s)", [channel_name(self.schema, channel), payload])

    def _events_written(self, c: psycopg.Connection[Any], run_id: str) -> None:
        """Inside ``append_events``' transaction: wake ``listen("events")`` at commit."""
        c.execute(
            "SELECT pg_notify(%s, %s)",
            [channel_name(self.schema, EVENTS_CHANNEL), run_id[:7900]],
        )
