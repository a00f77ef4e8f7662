"""The events table of ``SQLiteStore`` and ``PostgresStore``, written once: the live view
of a run (the engine's typed events as JSON) kept in the store, so a process that does
not execute the run (another service process, the inspector) can follow it.

Events are not the durable record (that is the committed rows): they carry no integrity
hash, a second writer of the same ``(run, seq)`` is ignored, and only the newest
``MAX_EVENTS_PER_RUN`` of a run are kept (on SQLite, ``_sqlite_events``, at least that
many: whole batches are dropped).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from flowstate.errors import CorruptRowError

__all__ = [
    "MAX_EVENTS_PER_RUN",
    "EventRow",
    "SQLEvents",
    "hydrate_updates",
    "pack_event",
    "unpack_event",
]

MAX_EVENTS_PER_RUN = 10_000
"""Events kept per run: appending beyond it deletes the oldest."""

EventRow = tuple[int, str, str, float]
"""``(seq, kind, data, created_at)``: ``seq`` counts from 1 per run, ``data`` is JSON."""


def _head(run_id: str, kind: str, at: float) -> str:
    """The opening of an event's JSON as pydantic writes it (``run_id``, ``at``, ``kind``
    first), rebuilt from the row's own columns."""
    return f'{{"run_id":{json.dumps(run_id)},"at":{at!r},"kind":{json.dumps(kind)}'


def pack_event(run_id: str, kind: str, data: str, at: float) -> str:
    """The stored form of an event's JSON: without the opening its columns already hold
    (``_head``), marked by a leading comma (no JSON text starts with one); unchanged when
    the opening is not exactly that (a child run's event, another float spelling)."""
    head = _head(run_id, kind, at)
    if data.startswith(head) and data[len(head) : len(head) + 1] == ",":
        return data[len(head) :]
    return data


def unpack_event(run_id: str, kind: str, stored: str, at: float) -> str:
    """``pack_event`` undone."""
    return _head(run_id, kind, at) + stored if stored.startswith(",") else stored


def hydrate_updates(
    rows: list[EventRow], writes: Callable[[str, int, int], list[Any]]
) -> list[EventRow]:
    """Put back the ``update`` of the ``node_finished`` events stored without it.

    The update of an activation is its committed write row's ``update`` (the event's is
    ``json.loads`` of the same text), so a store that keeps both stores it once: the
    engine writes such events without the field (``EVENTS_WITHOUT_UPDATES``), and a read
    fills it in from ``writes(run_id, start, stop)`` — one read per run and step range of
    the batch. An event whose write row is gone (the step was re-run or pruned) or
    fails its check (``CorruptRowError``, which ``flowstate doctor`` reports) gets
    ``{}``."""
    slim: list[tuple[int, dict[str, Any]]] = []
    for i, (_, kind, data, _) in enumerate(rows):
        if kind == "node_finished" and '"update":' not in data:
            d = json.loads(data)
            if isinstance(d, dict) and "update" not in d:
                slim.append((i, d))
    if not slim:
        return rows
    wanted: dict[str, list[int]] = {}
    for _, d in slim:
        wanted.setdefault(str(d.get("run_id")), []).append(int(d.get("step", 0)))
    found: dict[tuple[str, int, str], str] = {}
    for rid, steps in wanted.items():
        try:
            got = writes(rid, min(steps), max(steps) + 1)
        except CorruptRowError:  # a live view: the events still go out, without updates
            continue
        for w in got:
            found[(rid, w.step, w.task_path)] = w.update
    out = list(rows)
    for i, d in slim:
        raw = found.get((str(d.get("run_id")), int(d.get("step", 0)), str(d.get("task_path"))))
        full: dict[str, Any] = {}
        for k, v in d.items():
            full[k] = v
            if k == "task_path":
                full["update"] = json.loads(raw) if raw is not None else {}
        full.setdefault("update", {})
        seq, kind, _, at = rows[i]
        out[i] = (seq, kind, json.dumps(full, ensure_ascii=False, separators=(",", ":")), at)
    return out


class SQLEvents:
    """``append_events`` / ``events_since`` / ``last_event_seq``; uses the store's
    ``_read``, ``_stmt`` and ``write``, and ``_events_written`` (Postgres: NOTIFY)."""

    EVENTS_WITHOUT_UPDATES = True
    """The engine stores ``node_finished`` events without their ``update``, which the
    run's write row holds already; ``events_since`` puts it back (``hydrate_updates``).
    Half the bytes of a run whose updates are large (bench W2)."""

    _read: Callable[..., list[Any]]
    _stmt: Callable[[str], Any]
    write: Callable[[], AbstractContextManager[Any]]
    writes: Callable[..., list[Any]]
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
                    self.cipher.seal_value(
                        "events", "data", (run_id, seq), pack_event(run_id, kind, d, at)
                    ),
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
        return hydrate_updates(
            [
                (
                    int(r[0]),
                    str(r[1]),
                    unpack_event(
                        run_id,
                        str(r[1]),
                        str(
                            self.cipher.open_value("events", "data", (run_id, int(r[0])), str(r[2]))
                        ),
                        float(r[3]),
                    ),
                    float(r[3]),
                )
                for r in rows
            ],
            self.writes,
        )

    def last_event_seq(self, run_id: str) -> int:
        """The seq of the run's newest event (0 when it has none)."""
        rows = self._read(
            self._stmt('SELECT max("seq") FROM {events} WHERE "run_id" = ?'), [run_id]
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0
