"""The events table of ``SQLiteStore``: one compressed row per appended batch.

``SQLEvents`` (PostgreSQL) keeps a row per event. On SQLite a row per event cost more than
the rest of an activation's commit (three B-tree inserts into a keyed table per
activation, ~0.5 kB each in the file): here each ``append_events`` call, which the engine
makes once per buffered batch (up to 256 events, or 0.1 s), is one row: ``seq`` is its
first event's seq, ``last`` its last one's, ``kind`` is empty and ``data`` the batch's
events, a line each (``_batch_text``), zlib-compressed (a tenth of the bytes: the events
of a run repeat their run id and keys). Rows written before migration m702 (or by a
process still running an older flowstate during a rolling deploy) are single events,
``last`` NULL or equal to ``seq``, and are read as before.

On an encrypted store the batch is sealed like any payload (``_crypto``): its compressed
bytes, base64-encoded, under the row's key ``(run_id, seq)``.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Sequence
from typing import Any

from ._crypto import is_sealed
from ._sql_events import MAX_EVENTS_PER_RUN, EventRow, SQLEvents, hydrate_updates, unpack_event

__all__ = ["SQLiteEvents"]

BATCH_KIND = ""
"""The ``kind`` of a batch row (an event always has a kind)."""
_SEALED_BATCH = "z:"
"""Opening of a sealed batch's plain text: base64 of the compressed bytes follows."""
ZLIB_LEVEL = 3
"""Level 3: 9× smaller than the JSON on W1's events at ~1 µs per event; 6 was 10× at 2.5×
the time."""


def _batch_text(events: Sequence[EventRow]) -> str:
    """A batch as text: a line ``seq TAB kind TAB at TAB json`` per event (compact JSON has
    no raw newline or tab: both are escaped inside strings), or, when some event's data
    is not one line, a JSON array of ``[seq, kind, at, data]``. The data is stored whole:
    what its events repeat (the run id, the keys) compression takes out."""
    lines = [f"{seq}\t{kind}\t{at!r}\t{data}" for seq, kind, data, at in events]
    text = "\n".join(lines)
    if text.count("\n") != len(lines) - 1:
        return json.dumps([list(e) for e in events], separators=(",", ":"))
    return text


def _batch_items(text: str) -> list[tuple[int, str, float, str]]:
    """``_batch_text`` undone: ``(seq, kind, at, data)`` per event."""
    if text.startswith("["):
        return [(int(s), str(k), float(a), str(d)) for s, k, d, a in json.loads(text)]
    out = []
    for line in text.split("\n"):
        s, k, a, d = line.split("\t", 3)
        out.append((int(s), k, float(a), d))
    return out


class SQLiteEvents(SQLEvents):
    """``SQLEvents`` with a row per batch (see the module)."""

    def _insert_events(self, c: Any, run_id: str, events: Sequence[EventRow]) -> None:
        first, last = events[0][0], max(e[0] for e in events)
        blob = zlib.compress(_batch_text(events).encode(), ZLIB_LEVEL)
        data: bytes | str = blob
        cipher = self.cipher
        if cipher.keyring is not None or cipher.encrypted is not False:
            text = _SEALED_BATCH + base64.b64encode(blob).decode()
            sealed = cipher.seal_value("events", "data", (run_id, first), text)
            if is_sealed(sealed):
                data = sealed
        c.execute(
            self._stmt(
                'INSERT INTO {events} ("run_id", "seq", "last", "kind", "data", "created_at") '
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ),
            [run_id, first, last, BATCH_KIND, data, events[0][3]],
        )
        if last > MAX_EVENTS_PER_RUN:  # whole batches: at least the newest MAX are kept
            c.execute(
                self._stmt(
                    'DELETE FROM {events} WHERE "run_id" = ? AND coalesce("last", "seq") <= ?'
                ),
                [run_id, last - MAX_EVENTS_PER_RUN],
            )
        self._events_written(c, run_id)

    def events_since(self, run_id: str, after: int = 0, limit: int = 1000) -> list[EventRow]:
        """The run's events with ``seq > after``, oldest first, at most ``limit``: read
        from the batch holding ``after + 1`` on (at most ``limit`` rows: a row holds at
        least one event). A seq written twice (two writers' overlapping batches) is
        returned once, as the earlier row has it."""
        after, limit = int(after), int(limit)
        rows = self._read(
            self._stmt(
                'SELECT "seq", "kind", "data", "created_at" FROM {events} '
                'WHERE "run_id" = ? AND "seq" >= coalesce((SELECT max("seq") FROM {events} '
                'WHERE "run_id" = ? AND "seq" <= ?), 0) ORDER BY "seq" LIMIT ?'
            ),
            [run_id, run_id, after + 1, limit],
        )
        out: list[EventRow] = []
        seen = after
        for r in rows:
            seq, kind, data = int(r[0]), str(r[1]), r[2]
            if kind != BATCH_KIND:  # a single event, stored packed (``pack_event``)
                at = float(r[3])
                opened = self._opened(run_id, seq, data)
                items = [(seq, kind, at, unpack_event(run_id, kind, opened, at))]
            else:
                items = _batch_items(self._decompressed(run_id, seq, data))
            for s, k, at, d in items:
                if s <= seen:
                    continue
                seen = s
                out.append((s, k, d, at))
                if len(out) >= limit:
                    return hydrate_updates(out, self.writes)
        return hydrate_updates(out, self.writes)

    def last_event_seq(self, run_id: str) -> int:
        """The seq of the run's newest event (0 when it has none)."""
        rows = self._read(
            self._stmt('SELECT max(coalesce("last", "seq")) FROM {events} WHERE "run_id" = ?'),
            [run_id],
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def _opened(self, run_id: str, seq: int, data: Any) -> str:
        return str(self.cipher.open_value("events", "data", (run_id, seq), str(data)))

    def _decompressed(self, run_id: str, seq: int, data: Any) -> str:
        if isinstance(data, str):  # sealed: base64 of the compressed bytes inside
            opened = self._opened(run_id, seq, data)
            data = base64.b64decode(opened.removeprefix(_SEALED_BATCH))
        return zlib.decompress(data).decode()
