"""The :class:`Memory` protocol and the machinery every single-kind memory shares."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import JsonValue, ValidationError

from ._embed import Embedder, embed_checked, embedder_name
from ._errors import MemoryConfigError
from ._models import MemoryEntry, MemoryKind, ScoredEntry, new_entry_id
from ._ops import ClearOp, DeleteOp, MemoryOp, UpsertOp, encode_vector, next_seq
from ._snapshot import Snapshot

if TYPE_CHECKING:
    from ._backend import BaseMemoryStore

__all__ = ["BaseMemory", "Memory", "check_k", "reject_unknown"]


@runtime_checkable
class Memory(Protocol):
    """What every memory offers, whatever its kind (composite memories included)."""

    def add(
        self,
        content: str,
        *,
        importance: float = 0.5,
        metadata: Mapping[str, JsonValue] | None = None,
        **kw: Any,
    ) -> MemoryEntry:
        """Store ``content``; returns the stored entry."""
        ...

    def retrieve(self, query: str, k: int = 5) -> list[ScoredEntry]:
        """At most ``k`` entries, best first (sorted by ``score``, descending)."""
        ...

    def clear(self) -> None:
        """Delete everything this memory holds in its namespace."""
        ...

    def inspect(self) -> list[MemoryEntry]:
        """Everything this memory holds, oldest first, for debugging."""
        ...


def check_k(k: int, where: str) -> None:
    """Refuse a ``k`` that is not a non-negative int."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise MemoryConfigError(f"{where}.retrieve(k={k!r}): k must be an int >= 0")


def reject_unknown(kw: Mapping[str, Any], where: str, accepted: Sequence[str]) -> None:
    """Refuse keywords a method does not know, instead of silently ignoring a typo."""
    if kw:
        raise MemoryConfigError(
            f"{where} got unexpected keyword(s) {', '.join(sorted(kw))}; "
            f"it accepts: {', '.join(sorted(accepted))}"
        )


class BaseMemory:
    """Shared machinery of the single-kind memories (not part of the public API)."""

    kind: ClassVar[MemoryKind]
    """The kind of entry this memory stores."""

    def __init__(
        self,
        store: BaseMemoryStore,
        namespace: str = "default",
        *,
        buffer: list[MemoryOp] | None = None,
        embedder: Embedder | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise MemoryConfigError(
                f"{type(self).__name__}(namespace={namespace!r}): the namespace must be a "
                "non-empty string, e.g. the agent's or the user's id"
            )
        if buffer is not None and not isinstance(buffer, list):
            raise MemoryConfigError(
                f"{type(self).__name__}(buffer=...) must be a list that collects the ops "
                f"(or None to commit at once), got {type(buffer).__name__}"
            )
        self.store = store
        """Where entries persist."""
        self.namespace = namespace
        """The isolation scope of this memory's entries."""
        self.buffer = buffer
        """When a list, writes are appended to it as ops instead of committed (buffered
        mode) and reads see them; when ``None``, every write commits at once."""
        self.embedder: Embedder = embedder if embedder is not None else store.embedder
        """Embeds contents and queries."""
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        """Timestamps new entries (Unix seconds); injectable for tests and replay."""

    def __repr__(self) -> str:
        mode = "buffered" if self.buffer is not None else "immediate"
        return f"{type(self).__name__}(namespace={self.namespace!r}, {mode})"

    @property
    def _label(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r})"

    # -- the Memory protocol, implemented by each kind ------------------------------------

    def add(
        self,
        content: str,
        *,
        importance: float = 0.5,
        metadata: Mapping[str, JsonValue] | None = None,
        **kw: Any,
    ) -> MemoryEntry:
        """Store ``content``; returns the stored entry."""
        raise NotImplementedError  # pragma: no cover - every kind overrides it

    def retrieve(self, query: str, k: int = 5) -> list[ScoredEntry]:
        """At most ``k`` entries, best first."""
        raise NotImplementedError  # pragma: no cover - every kind overrides it

    # -- reading --------------------------------------------------------------------------

    def _view(self, kind: MemoryKind | None = None) -> Snapshot:
        """Committed entries of ``kind`` with the buffered ops applied on top."""
        committed = self.store._snapshot(self.namespace, kind or self.kind)
        if not self.buffer:
            return committed
        first = committed.first_touch(self.buffer)
        if first is None:
            return committed
        overlay = committed.copy(keep_entries=True)
        overlay.apply_all(self.buffer[first:])
        return overlay

    def _entries(self, snap: Snapshot, slots: np.ndarray) -> list[MemoryEntry | None]:
        """The entries in these slots, in order (``None`` if one vanished meanwhile)."""
        ids = [snap.ids[i] for i in slots.tolist()]
        missing = [entry_id for entry_id in ids if entry_id not in snap.entries]
        fetched = self.store._fetch(snap.namespace, missing) if missing else {}
        return [snap.entries.get(entry_id) or fetched.get(entry_id) for entry_id in ids]

    def _scored(
        self,
        snap: Snapshot,
        slots: np.ndarray,
        scores: np.ndarray,
        details: Sequence[dict[str, float]] | None = None,
    ) -> list[ScoredEntry]:
        out = []
        for n, entry in enumerate(self._entries(snap, slots)):
            if entry is not None:
                extra = details[n] if details is not None else {}
                out.append(ScoredEntry(entry=entry, score=float(scores[n]), details=extra))
        return out

    def _check_embedder(self, snap: Snapshot) -> None:
        snap.check_embedder(
            embedder_name(self.embedder), self.embedder.dim, memory=f"{self._label}[{snap.kind}]"
        )

    def _embed(self, texts: list[str]) -> np.ndarray:
        return embed_checked(self.embedder, texts)

    def _similar(self, query: str, k: int, kind: MemoryKind | None = None) -> list[ScoredEntry]:
        """Top ``k`` by cosine similarity to ``query``; ties go to the newer entry."""
        check_k(k, self._label)
        snap = self._view(kind)
        if k == 0 or not len(snap):
            return []
        self._check_embedder(snap)
        live = snap.live()
        sims = snap.cosine(live, self._embed([query])[0])
        slots, scores = snap.top(live, sims, k)
        return self._scored(snap, slots, scores)

    def _sources(self) -> list[tuple[Snapshot, Embedder]]:
        """Snapshots a composite memory ranks over, each with the embedder of its rows."""
        snap = self._view()
        if len(snap):
            self._check_embedder(snap)
        return [(snap, self.embedder)]

    def inspect(self) -> list[MemoryEntry]:
        """Every entry this memory holds (buffered writes included), oldest first."""
        snap = self._view()
        slots = snap.recent(snap.live())[::-1]
        return [entry for entry in self._entries(snap, slots) if entry is not None]

    def count(self) -> int:
        """How many entries this memory holds (buffered writes included)."""
        return len(self._view())

    # -- writing --------------------------------------------------------------------------

    def _commit(self, plan: Callable[[], Sequence[MemoryOp]]) -> list[MemoryOp]:
        """Buffer the planned ops, or apply them now in one write transaction of the store."""
        if self.buffer is not None:
            ops = list(plan())
            self.buffer.extend(ops)
            return ops
        return self.store._write(plan, self.namespace)

    def _new_entry(
        self,
        content: str,
        *,
        importance: float,
        metadata: Mapping[str, JsonValue] | None,
        entry_id: str | None = None,
        timestamp: float | None = None,
        key: str | None = None,
        kind: MemoryKind | None = None,
    ) -> MemoryEntry:
        if not isinstance(content, str):
            raise MemoryConfigError(
                f"{self._label}.add() takes text content, got {type(content).__name__}: "
                "convert it with str() or json.dumps() first"
            )
        try:
            return MemoryEntry(
                id=entry_id if entry_id is not None else new_entry_id(),
                content=content,
                timestamp=self.clock() if timestamp is None else timestamp,
                importance=importance,
                metadata=dict(metadata or {}),
                kind=kind or self.kind,
                key=key,
                namespace=self.namespace,
            )
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                for e in err.errors()
            )
            raise MemoryConfigError(f"{self._label}.add(): invalid entry: {problems}") from err

    def _upsert(
        self, entry: MemoryEntry, vector: np.ndarray, *, seq: int | None = None
    ) -> UpsertOp:
        return UpsertOp(
            entry=entry,
            seq=next_seq() if seq is None else seq,
            embedding=encode_vector(vector),
            dim=int(vector.shape[0]),
            embedder=embedder_name(self.embedder),
        )

    def delete(self, entry_id: str) -> None:
        """Delete one entry by id (nothing happens if it does not exist)."""
        self._commit(lambda: [DeleteOp(namespace=self.namespace, ids=[entry_id])])

    def clear(self) -> None:
        """Delete every entry of this memory's kind in its namespace."""
        self._commit(lambda: [ClearOp(namespace=self.namespace, kind=self.kind)])
