"""The events table of ``SQLiteStore`` and ``PostgresStore``, written once: the live view
of a run (the engine's typed events as JSON) kept in the store, so a process that does
not execute the run (another service process, the inspector) can follow it.

Events are not the durable record (that is the committed rows): they carry no integrity
hash, a second writer of the same ``(run, seq)`` is ignored, and only the newest
``MAX_EVENTS_PER_RUN`` of a run are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["MAX_EVENTS_PER_RUN", "EventRow", "SQLEvents"]

MAX_EVENTS_PER_RUN = 10_000
"""Events kept per run: appending beyond it deletes the oldest."""

EventRow = tuple[int, str, str, float]
"""``(seq, kind, data, created_at)``: ``seq`` counts from 1 per run, ``data`` is JSON."""


class SQLEvents:
    """``append_events`` / ``events_since`` / ``last_event_seq``; uses the store's
    ``_read``, ``_stmt`` and ``write``, and ``_events_written`` (Postgres: NOTIFY)."""

    _read: Callable[..., list[Any]]
    _stmt: Callable[[str], Any]
    write: Callable[[], AbstractContextManager[Any]]
    cipher: Any
    """Seals ``data`` (encryption at rest, ``_crypto``): events carry updates and state."""

    def append_events(self, run_id: str, events: Sequence[EventRow]) -> None:
        """Add events of ``run_id`` in one transaction (rows whose seq is already stored
        are left as they are), and drop the run's events older than the newest
        ``MAX_EVENTS_PER_RUN``."""
        if not events:
            return
        with self.write() as c:
            self._insert_events(c, run_id, events)

    def _insert_events(self, c: Any, run_id: str, events: Sequence[EventRow]) -> None:
        """``append_events`` inside the caller's transaction (group commit, too)."""
        cur = c.cursor()
        cur.executemany(
            self._stmt(
                'INSERT INTO {events} ("run_id", "seq", "kind", "data", "created_at") '
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ),
            [
                (
                    run_id,
                    seq,
                    kind,
                    self.cipher.seal_value("events", "data", (run_id, seq), d),
                    at,
                )
                for seq, kind, d, at in events
            ],
        )
        last = max(e[0] for e in events)
        if last > MAX_EVENTS_PER_RUN:
            c.execute(
                self._stmt('DELETE FROM {events} WHERE "run_id" = ? AND "seq" <= ?'),
                [run_id, last - MAX_EVENTS_PER_RUN],
            )
        self._events_written(c, run_id)

    def _events_written(self, c: Any, run_id: str) -> None:
        """Hook inside the append transaction (``PostgresStore`` wakes listeners)."""

    def events_since(self, run_id: str, after: int = 0, limit: int = 1000) -> list[EventRow]:
        """The run's events with ``seq > after``, oldest first, at most ``limit``."""
        rows = self._read(
            self._stmt(
                'SELECT "seq", "kind", "data", "created_at" FROM {events} '
                'WHERE "run_id" = ? AND "seq" > ? ORDER BY "seq" LIMIT ?'
            ),
            [run_id, int(after), int(limit)],
        )
        return [
            (
                int(r[0]),
                str(r[1]),
                str(self.cipher.open_value("events", "data", (run_id, int(r[0])), str(r[2]))),
                float(r[3]),
            )
            for r in rows
        ]

    def last_event_seq(self, run_id: str) -> int:
        """The seq of the run's newest event (0 when it has none)."""
        rows = self._read(
            self._stmt('SELECT max("seq") FROM {events} WHERE "run_id" = ?'), [run_id]
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0
