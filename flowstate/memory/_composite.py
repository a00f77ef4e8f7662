"""Composite memory: several kinds behind one ``add``/``retrieve``, merged by one score."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from pydantic import JsonValue

from ._base import BaseMemory, check_k
from ._embed import embed_checked
from ._errors import MemoryConfigError
from ._models import MEMORY_KINDS, MemoryEntry, MemoryKind, ScoredEntry
from ._snapshot import Snapshot

__all__ = ["CompositeMemory"]


def _content_key(content: str) -> str:
    return " ".join(content.split()).casefold()


class CompositeMemory:
    """One memory per kind, added to by kind and retrieved from all at once.

    ``add(content, kind=...)`` goes to the memory of that kind. Without ``kind`` it goes to
    episodic memory (or, when there is none, to reflection memory, which stores episodic
    entries), or to the only memory held.

    ``retrieve(query, k)`` ranks the entries of every held memory by one score::

        score = relevance_weight  * max(0, cosine(query, entry))
              + importance_weight * entry.importance
              + recency_weight    * 0.5 ** (age / half_life)

    where ``age`` is the time since ``entry.timestamp`` (seconds, never negative) and
    ``half_life`` the age at which recency has halved. With the default weights (0.6, 0.2,
    0.2) the score lies within 0..1. Working entries are ranked by relevance here too, unlike
    in :meth:`WorkingMemory.retrieve`. Results are deduplicated by content (whitespace and
    case ignored), keeping the best-scored copy, and by id; ties go to the newer entry. Each
    result's ``details`` holds its ``relevance``, ``importance`` and ``recency``.
    """

    def __init__(
        self,
        memories: Iterable[BaseMemory],
        *,
        relevance_weight: float = 0.6,
        importance_weight: float = 0.2,
        recency_weight: float = 0.2,
        half_life: float = 86_400.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.memories: dict[MemoryKind, BaseMemory] = {}
        """The held memories by kind."""
        for memory in memories:
            if not isinstance(memory, BaseMemory):
                raise MemoryConfigError(
                    f"CompositeMemory() holds single-kind memories (store.memory(kind, ...)), "
                    f"got {type(memory).__name__}"
                )
            if memory.kind in self.memories:
                raise MemoryConfigError(
                    f"CompositeMemory() got two {memory.kind!r} memories ({memory!r} and "
                    f"{self.memories[memory.kind]!r}): hold one memory per kind"
                )
            self.memories[memory.kind] = memory
        if not self.memories:
            raise MemoryConfigError("CompositeMemory() needs at least one memory")
        weights = (relevance_weight, importance_weight, recency_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise MemoryConfigError(
                f"CompositeMemory weights (relevance, importance, recency) = {weights} must be "
                ">= 0 and not all 0"
            )
        if not half_life > 0:
            raise MemoryConfigError(f"CompositeMemory(half_life={half_life!r}) must be > 0")
        self.relevance_weight = relevance_weight
        """Weight of the cosine similarity to the query (negative similarity counts as 0)."""
        self.importance_weight = importance_weight
        """Weight of the entry's importance."""
        self.recency_weight = recency_weight
        """Weight of the recency, ``0.5 ** (age / half_life)``."""
        self.half_life = half_life
        """Seconds after which an entry's recency has halved."""
        first = next(iter(self.memories.values()))
        self.clock: Callable[[], float] = clock if clock is not None else first.clock
        """The "now" that ages are measured from."""

    def __repr__(self) -> str:
        return f"CompositeMemory({', '.join(self.memories)})"

    def __getitem__(self, kind: MemoryKind) -> Any:
        """The held memory of ``kind`` (typed ``Any`` so kind-specific methods type-check)."""
        if kind not in self.memories:
            raise MemoryConfigError(
                f"{self!r} holds no {kind!r} memory; it holds: {', '.join(self.memories)}"
            )
        return self.memories[kind]

    @property
    def kinds(self) -> list[MemoryKind]:
        """The kinds held, in the order given."""
        return list(self.memories)

    def _route(self, kind: MemoryKind | None) -> BaseMemory:
        if kind is None:
            if len(self.memories) == 1:
                return next(iter(self.memories.values()))
            kind = "episodic"
        if kind == "episodic" and kind not in self.memories and "reflection" in self.memories:
            return self.memories["reflection"]
        if kind not in self.memories:
            known = ", ".join(k for k in MEMORY_KINDS if k in self.memories)
            raise MemoryConfigError(
                f"{self!r}.add(kind={kind!r}): no memory of that kind is held; "
                f"pass kind= one of: {known}"
            )
        return self.memories[kind]

    def add(
        self,
        content: str,
        *,
        importance: float = 0.5,
        metadata: Mapping[str, JsonValue] | None = None,
        kind: MemoryKind | None = None,
        **kw: Any,
    ) -> MemoryEntry:
        """Store ``content`` in the memory of ``kind`` (extra keywords go to its ``add``)."""
        return self._route(kind).add(content, importance=importance, metadata=metadata, **kw)

    def retrieve(self, query: str, k: int = 5) -> list[ScoredEntry]:
        """The ``k`` best entries over all held memories by the score in the class docstring."""
        check_k(k, "CompositeMemory")
        if k == 0:
            return []
        now = self.clock()
        queries: dict[int, np.ndarray] = {}
        seen: set[tuple[str, str]] = set()
        ranked: list[tuple[BaseMemory, Snapshot, np.ndarray, np.ndarray, np.ndarray]] = []
        for memory in self.memories.values():
            for snap, embedder in memory._sources():
                if (snap.namespace, snap.kind) in seen or not len(snap):
                    continue
                seen.add((snap.namespace, snap.kind))
                if id(embedder) not in queries:
                    queries[id(embedder)] = embed_checked(embedder, [query])[0]
                live = snap.live()
                relevance = np.clip(snap.cosine(live, queries[id(embedder)]), 0.0, 1.0)
                age = np.clip(now - snap.ts[live], 0.0, None)
                recency = 0.5 ** (age / self.half_life)
                score = (
                    self.relevance_weight * relevance
                    + self.importance_weight * snap.imp[live]
                    + self.recency_weight * recency
                )
                components = np.stack([relevance, recency])
                ranked.append((memory, snap, live, score, components))
        want = 2 * k
        while True:
            candidates: list[ScoredEntry] = []
            exhausted = True
            for memory, snap, live, score, components in ranked:
                slots, scores = snap.top(live, score, want)
                exhausted = exhausted and len(slots) == len(live)
                at = np.searchsorted(live, slots)  # live is ascending
                details = [
                    {
                        "relevance": float(components[0, position]),
                        "importance": float(snap.imp[slot]),
                        "recency": float(components[1, position]),
                    }
                    for slot, position in zip(slots.tolist(), at.tolist(), strict=True)
                ]
                candidates += memory._scored(snap, slots, scores, details)
            candidates.sort(key=lambda s: (-s.score, -s.entry.timestamp))
            results: list[ScoredEntry] = []
            ids: set[str] = set()
            contents: set[str] = set()
            for scored in candidates:
                content = _content_key(scored.entry.content)
                if scored.entry.id in ids or content in contents:
                    continue
                ids.add(scored.entry.id)
                contents.add(content)
                results.append(scored)
            if len(results) >= k or exhausted:
                return results[:k]
            want *= 2

    def clear(self) -> None:
        """Clear every held memory."""
        for memory in self.memories.values():
            memory.clear()

    def inspect(self) -> list[MemoryEntry]:
        """Every entry of every held memory (buffered writes included), oldest first."""
        by_id: dict[str, MemoryEntry] = {}
        for memory in self.memories.values():
            for entry in memory.inspect():
                by_id.setdefault(entry.id, entry)
        return sorted(by_id.values(), key=lambda entry: entry.timestamp)
