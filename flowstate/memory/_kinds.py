"""Working, episodic and semantic memory: the three kinds that need no LLM."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import JsonValue

from ._base import BaseMemory, check_k, reject_unknown
from ._embed import Embedder
from ._errors import MemoryConfigError
from ._models import MemoryEntry, MemoryKind, ScoredEntry
from ._ops import DeleteOp, MemoryOp, TrimOp

if TYPE_CHECKING:
    from ._backend import BaseMemoryStore

__all__ = ["EpisodicMemory", "SemanticMemory", "WorkingMemory"]


class WorkingMemory(BaseMemory):
    """Short-term memory with a fixed ``capacity``.

    Rules:

    - When an add takes it over capacity, the least important entry is evicted; among
      equally important entries the oldest goes first (by timestamp, then write order).
      The entry just added is evicted itself if it is the least important one.
    - ``retrieve(query, k)`` returns the ``k`` most recent entries, newest first; the query is
      ignored. The score is ``1 / (1 + rank)``: 1.0 for the newest, then 0.5, 0.33, ...

    The capacity is enforced by a :class:`TrimOp` evaluated when the ops are applied, so it
    holds even when several writers add at once. Entries are embedded too, so a
    :class:`CompositeMemory` can rank them by relevance.
    """

    kind: ClassVar[MemoryKind] = "working"

    def __init__(
        self,
        store: BaseMemoryStore,
        namespace: str = "default",
        *,
        capacity: int = 20,
        buffer: list[MemoryOp] | None = None,
        embedder: Embedder | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(store, namespace, buffer=buffer, embedder=embedder, clock=clock)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise MemoryConfigError(
                f"WorkingMemory(capacity={capacity!r}) in namespace {namespace!r}: "
                "capacity must be an int >= 1"
            )
        self.capacity = capacity
        """How many entries are kept."""

    def add(
        self,
        content: str,
        *,
        importance: float = 0.5,
        metadata: Mapping[str, JsonValue] | None = None,
        id: str | None = None,
        timestamp: float | None = None,
        **kw: Any,
    ) -> MemoryEntry:
        """Store ``content``, then evict down to ``capacity``; returns the new entry."""
        reject_unknown(kw, f"{self._label}.add()", ["id", "importance", "metadata", "timestamp"])
        entry = self._new_entry(
            content, importance=importance, metadata=metadata, entry_id=id, timestamp=timestamp
        )
        op = self._upsert(entry, self._embed([content])[0])
        trim = TrimOp(namespace=self.namespace, kind=self.kind, capacity=self.capacity)
        self._commit(lambda: [op, trim])
        return entry

    def retrieve(self, query: str, k: int = 5) -> list[ScoredEntry]:
        """The ``k`` most recent entries, newest first (the query is ignored)."""
        check_k(k, self._label)
        snap = self._view()
        slots = snap.recent(snap.live())[:k]
        scores = 1.0 / (1.0 + np.arange(len(slots), dtype=np.float64))
        return self._scored(snap, slots, scores)


class EpisodicMemory(BaseMemory):
    """What happened, recalled by similarity.

    Every entry is embedded when added. ``retrieve(query, k)`` ranks all entries of the
    namespace by cosine similarity between the query's and the entry's embeddings (computed
    with numpy over the stored float32 vectors); equal similarities go to the newer entry.
    The score is the cosine similarity, within -1..1. Importance and timestamps are kept for
    :class:`CompositeMemory`, which weighs them in.
    """

    kind: ClassVar[MemoryKind] = "episodic"

    def add(
        self,
        content: str,
        *,
        importance: float = 0.5,
        metadata: Mapping[str, JsonValue] | None = None,
        id: str | None = None,
        timestamp: float | None = None,
        **kw: Any,
    ) -> MemoryEntry:
        """Store ``content``; pass ``id`` to make a retried add idempotent."""
        reject_unknown(kw, f"{self._label}.add()", ["id", "importance", "metadata", "timestamp"])
        entry = self._new_entry(
            content, importance=importance, metadata=metadata, entry_id=id, timestamp=timestamp
        )
        op = self._upsert(entry, self._embed([content])[0])
        self._commit(lambda: [op])
        return entry

    def retrieve(self, query: str, k: int = 5) -> list[ScoredEntry]:
        """The ``k`` entries most similar to ``query``, best first."""
        return self._similar(query, k)


class SemanticMemory(BaseMemory):
    """Facts under keys: ``add("Ada prefers tea", key="ada.drink")``.

    Re-adding a key updates the fact in place: the entry keeps its id and gets the new
    content, embedding, importance, metadata and timestamp. A unique index on (namespace,
    kind, key) guarantees one fact per key even when two writers race. ``retrieve`` ranks by
    cosine similarity like :class:`EpisodicMemory`.
    """

    kind: ClassVar[MemoryKind] = "semantic"

    def add(
        self,
        content: str,
        *,
        importance: float = 0.5,
        metadata: Mapping[str, JsonValue] | None = None,
        key: str | None = None,
        timestamp: float | None = None,
        **kw: Any,
    ) -> MemoryEntry:
        """Store ``content`` under ``key`` (required), replacing the key's previous content."""
        reject_unknown(kw, f"{self._label}.add()", ["importance", "key", "metadata", "timestamp"])
        if not isinstance(key, str) or not key:
            raise MemoryConfigError(
                f"{self._label}.add({content[:40]!r}) needs key=: semantic facts live under "
                "a key, e.g. add('Ada prefers tea', key='ada.drink')"
            )
        fresh = self._new_entry(
            content, importance=importance, metadata=metadata, timestamp=timestamp, key=key
        )
        vector = self._embed([content])[0]
        written: list[MemoryEntry] = []

        def plan() -> list[MemoryOp]:
            # Runs under the write lock (or against the buffer), so the id is the current one.
            existing = self._view().key_to_id.get(key)
            entry = fresh if existing is None else fresh.model_copy(update={"id": existing})
            written.append(entry)
            return [self._upsert(entry, vector)]

        self._commit(plan)
        return written[-1]

    def get(self, key: str) -> MemoryEntry | None:
        """The fact stored under ``key``, or ``None``."""
        snap = self._view()
        entry_id = snap.key_to_id.get(key)
        if entry_id is None:
            return None
        (entry,) = self._entries(snap, np.array([snap.index[entry_id]]))
        return entry

    def forget(self, key: str) -> bool:
        """Delete the fact under ``key``; returns whether there was one."""
        entry_id = self._view().key_to_id.get(key)
        if entry_id is None:
            return False
        self._commit(lambda: [DeleteOp(namespace=self.namespace, ids=[entry_id])])
        return True

    def retrieve(self, query: str, k: int = 5) -> list[ScoredEntry]:
        """The ``k`` facts most similar to ``query``, best first."""
        return self._similar(query, k)
