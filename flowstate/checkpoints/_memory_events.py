"""``InMemoryStore``'s events table (see ``_sql_events``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._sql_events import MAX_EVENTS_PER_RUN, EventRow

__all__ = ["MemoryEvents"]


class MemoryEvents:
    """Mixin of ``InMemoryStore``: uses its ``_lock`` and ``_t``."""

    _lock: Any
    _t: Any
    commits: int

    def append_events(self, run_id: str, events: Sequence[EventRow]) -> None:
        if not events:
            return
        with self._lock:
            m = self._t.events.setdefault(run_id, {})
            for e in events:
                m.setdefault(e[0], (e[0], e[1], e[2], e[3]))
            floor = max(e[0] for e in events) - MAX_EVENTS_PER_RUN
            for seq in [s for s in m if s <= floor]:
                del m[seq]
            self.commits += 1

    def events_since(self, run_id: str, after: int = 0, limit: int = 1000) -> list[EventRow]:
        with self._lock:
            m = self._t.events.get(run_id) or {}
            return [m[s] for s in sorted(s for s in m if s > after)[:limit]]

    def last_event_seq(self, run_id: str) -> int:
        with self._lock:
            return max(self._t.events.get(run_id) or (0,))
