"""The memory-store interface (:class:`MemoryBackend`) and what its two stores share.

:class:`MemoryStore` (SQLite) and :class:`PostgresMemoryStore` differ only in how they
connect, open a write transaction and create their tables; everything else lives in
:class:`BaseMemoryStore`: the memories of each kind, the cached snapshots kept current
incrementally (``_sql.py``), reads, and the storage-level operations of the protocol.

Consistency (both stores): a read sees every write committed before it began, in any
process, and the buffered writes of the memory it goes through; writes to one namespace
are serialised (SQLite: the database's write lock; Postgres: the namespace's head row), so
every reader applies them in the same order. There is no snapshot across namespaces.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload, runtime_checkable

import numpy as np

from ._embed import Embedder, HashingEmbedder
from ._errors import MemoryConfigError
from ._models import MEMORY_KINDS, MemoryEntry, MemoryKind, ScoredEntry
from ._ops import DeleteOp, MemoryOp
from ._snapshot import Snapshot, fetch_entries, row_to_entry
from ._sql import ENTRY_COLS, Dialect, OpWriter, execute_ops, head, snapshot_rows, tombstones

if TYPE_CHECKING:
    from ._composite import CompositeMemory
    from ._kinds import EpisodicMemory, SemanticMemory, WorkingMemory
    from ._reflection import CompleteFn, ReflectionLLM, ReflectionMemory

__all__ = ["BaseMemoryStore", "MemoryBackend"]


@runtime_checkable
class MemoryBackend(Protocol):
    """What a memory store offers, whatever the database (SQLite or PostgreSQL).

    The memories (``memory``/``composite``) are built on the storage operations below; the
    shared contract tests (``tests/memory``) run against both implementations.
    """

    embedder: Embedder
    """The embedder memories of this store use unless given their own."""

    def memory(self, kind: MemoryKind, namespace: str = "default", **options: Any) -> Any:
        """A memory of ``kind`` in ``namespace`` (see :meth:`MemoryStore.memory`)."""
        ...

    def composite(self, namespace: str = "default", **options: Any) -> CompositeMemory:
        """Several kinds behind one memory (see :meth:`MemoryStore.composite`)."""
        ...

    def commit(self, ops: Sequence[MemoryOp]) -> None:
        """Add (and change) entries: apply ``ops`` in one transaction of the store."""
        ...

    def apply_ops(self, conn: Any, ops: Sequence[MemoryOp]) -> None:
        """Apply ``ops`` inside the caller's open transaction on ``conn`` (the engine's)."""
        ...

    def search(
        self, namespace: str, kind: MemoryKind, vector: Sequence[float] | np.ndarray, k: int = 5
    ) -> list[ScoredEntry]:
        """The ``k`` entries whose embeddings are most similar (cosine) to ``vector``."""
        ...

    def search_text(
        self, namespace: str, text: str, k: int = 5, kind: MemoryKind | None = None
    ) -> list[MemoryEntry]:
        """Up to ``k`` entries whose content contains ``text`` (case-insensitive), newest
        first."""
        ...

    def entries(
        self, namespace: str, kind: MemoryKind | None = None, *, limit: int | None = None
    ) -> list[MemoryEntry]:
        """The entries of ``namespace`` (optionally of one kind), oldest first."""
        ...

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        """Delete entries by id within ``namespace`` (missing ids are ignored)."""
        ...

    def namespaces(self) -> list[str]:
        """The namespaces that hold at least one entry, sorted."""
        ...

    def inspect(
        self, namespace: str | None = None, kind: MemoryKind | None = None
    ) -> list[MemoryEntry]:
        """Every committed entry (optionally of one namespace and/or kind), oldest first."""
        ...

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of committed entries per (namespace, kind)."""
        ...

    def close(self) -> None:
        """Release the store's connection."""
        ...


class BaseMemoryStore:
    """The shared implementation of :class:`MemoryBackend` (not instantiated directly)."""

    dialect: Dialect

    def __init__(self, embedder: Embedder | None) -> None:
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        """The embedder memories of this store use unless given their own."""
        self._snapshots: dict[tuple[str, MemoryKind], Snapshot] = {}
        self._lock = threading.RLock()
        self.reloads = 0
        """Full loads of a (namespace, kind) so far; catching up does not count (tests)."""

    # -- what each backend provides ---------------------------------------------------------

    def _connection(self) -> Any:
        """The connection reads go through."""
        raise NotImplementedError  # pragma: no cover

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One write transaction of this store: yields the connection, commits on exit."""
        raise NotImplementedError  # pragma: no cover
        yield  # pragma: no cover

    @contextlib.contextmanager
    def _consistent_read(self) -> Iterator[Any]:
        """A read-only transaction in which several reads see one state (the connection's
        open transaction when there is one)."""
        yield self._connection()

    def _stamp(self) -> object:
        """A cheap value that changes whenever the database may have changed (``None``:
        none is available, check the namespace's head every time)."""
        return None

    def _where(self) -> str:
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where()})"

    def close(self) -> None:  # pragma: no cover - each backend overrides it
        """Release the store's connection."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- memories -------------------------------------------------------------------------

    @overload
    def memory(
        self,
        kind: Literal["working"],
        namespace: str = ...,
        *,
        buffer: list[MemoryOp] | None = ...,
        embedder: Embedder | None = ...,
        clock: Callable[[], float] | None = ...,
        capacity: int = ...,
    ) -> WorkingMemory: ...
    @overload
    def memory(
        self,
        kind: Literal["episodic"],
        namespace: str = ...,
        *,
        buffer: list[MemoryOp] | None = ...,
        embedder: Embedder | None = ...,
        clock: Callable[[], float] | None = ...,
    ) -> EpisodicMemory: ...
    @overload
    def memory(
        self,
        kind: Literal["semantic"],
        namespace: str = ...,
        *,
        buffer: list[MemoryOp] | None = ...,
        embedder: Embedder | None = ...,
        clock: Callable[[], float] | None = ...,
    ) -> SemanticMemory: ...
    @overload
    def memory(
        self,
        kind: Literal["reflection"],
        namespace: str = ...,
        *,
        buffer: list[MemoryOp] | None = ...,
        embedder: Embedder | None = ...,
        clock: Callable[[], float] | None = ...,
        every: int = ...,
        llm: ReflectionLLM | None = ...,
        complete_fn: CompleteFn | None = ...,
        max_sources: int = ...,
        insight_importance: float = ...,
        reflection_share: float = ...,
    ) -> ReflectionMemory: ...
    @overload
    def memory(
        self,
        kind: MemoryKind,
        namespace: str = ...,
        *,
        buffer: list[MemoryOp] | None = ...,
        **options: Any,
    ) -> WorkingMemory | EpisodicMemory | SemanticMemory | ReflectionMemory: ...
    def memory(
        self,
        kind: MemoryKind,
        namespace: str = "default",
        *,
        buffer: list[MemoryOp] | None = None,
        **options: Any,
    ) -> WorkingMemory | EpisodicMemory | SemanticMemory | ReflectionMemory:
        """A memory of ``kind`` in ``namespace``.

        With ``buffer=[]`` (a list you keep), writes are appended to that list as
        :data:`MemoryOp` values instead of being committed, and reads see them; commit them
        with :meth:`commit` or, inside your own transaction, :meth:`apply_ops`. Without a
        buffer every write commits at once in its own write transaction.
        ``options`` go to the memory's class (``capacity``, ``every``, ``llm``, ...).
        """
        from ._kinds import EpisodicMemory, SemanticMemory, WorkingMemory
        from ._reflection import ReflectionMemory

        classes: dict[str, type[Any]] = {
            "working": WorkingMemory,
            "episodic": EpisodicMemory,
            "semantic": SemanticMemory,
            "reflection": ReflectionMemory,
        }
        if kind not in classes:
            raise MemoryConfigError(
                f"unknown memory kind {kind!r}: use one of {', '.join(MEMORY_KINDS)}, "
                "or store.composite(...) for several kinds at once"
            )
        memory: WorkingMemory | EpisodicMemory | SemanticMemory | ReflectionMemory = classes[kind](
            self, namespace, buffer=buffer, **options
        )
        return memory

    def composite(
        self,
        namespace: str = "default",
        *,
        kinds: Sequence[MemoryKind] = ("working", "episodic", "semantic"),
        buffer: list[MemoryOp] | None = None,
        embedder: Embedder | None = None,
        clock: Callable[[], float] | None = None,
        capacity: int = 20,
        every: int = 10,
        llm: ReflectionLLM | None = None,
        complete_fn: CompleteFn | None = None,
        relevance_weight: float = 0.6,
        importance_weight: float = 0.2,
        recency_weight: float = 0.2,
        half_life: float = 86_400.0,
    ) -> CompositeMemory:
        """A :class:`CompositeMemory` over one memory per kind in ``namespace``.

        ``capacity`` goes to working memory; ``every``, ``llm`` and ``complete_fn`` to
        reflection memory (whose base is the episodic memory when both kinds are present).
        The weights and ``half_life`` define the merged ranking (see
        :class:`CompositeMemory`).
        """
        from ._composite import CompositeMemory
        from ._kinds import EpisodicMemory, SemanticMemory, WorkingMemory
        from ._reflection import ReflectionMemory

        shared: dict[str, Any] = {"buffer": buffer, "embedder": embedder, "clock": clock}
        children: list[Any] = []
        episodic: EpisodicMemory | None = None
        for kind in kinds:
            if kind == "working":
                children.append(WorkingMemory(self, namespace, capacity=capacity, **shared))
            elif kind == "episodic":
                episodic = EpisodicMemory(self, namespace, **shared)
                children.append(episodic)
            elif kind == "semantic":
                children.append(SemanticMemory(self, namespace, **shared))
            elif kind != "reflection":
                raise MemoryConfigError(
                    f"unknown memory kind {kind!r} in kinds=: use {', '.join(MEMORY_KINDS)}"
                )
        if "reflection" in kinds:
            children.append(
                ReflectionMemory(
                    self,
                    namespace,
                    every=every,
                    llm=llm,
                    complete_fn=complete_fn,
                    base=episodic,
                    **shared,
                )
            )
        return CompositeMemory(
            children,
            relevance_weight=relevance_weight,
            importance_weight=importance_weight,
            recency_weight=recency_weight,
            half_life=half_life,
            clock=clock,
        )

    # -- writing ----------------------------------------------------------------------------

    def apply_ops(self, conn: Any, ops: Sequence[MemoryOp]) -> None:
        """Apply ``ops`` inside the caller's open transaction on ``conn`` (no BEGIN/COMMIT).

        This is the engine's seam: a node's buffered memory ops commit, or roll back, with
        the node's checkpoint, on the checkpoint store's own connection.
        """
        execute_ops(self.dialect, conn, ops)

    def commit(self, ops: Sequence[MemoryOp]) -> None:
        """Apply buffered ``ops`` in one transaction of this store."""
        ops = list(ops)
        self._write(lambda: ops)

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        """Delete entries by id within ``namespace`` (missing ids are ignored)."""
        self._write(lambda: [DeleteOp(namespace=namespace, ids=list(ids))], namespace)

    def _write(
        self, plan: Callable[[], Sequence[MemoryOp]], namespace: str | None = None
    ) -> list[MemoryOp]:
        """Run ``plan`` and apply the ops it returns in one write transaction.

        ``plan`` runs with the writers of ``namespace`` locked out, so what it reads (e.g.
        the id that holds a semantic key) cannot change before its ops commit. Returns the
        applied ops.
        """
        with self._lock, self._transaction() as conn:
            writer = OpWriter(self.dialect, conn)
            if namespace is not None and self.dialect.name == "postgres":
                writer.lock(namespace)  # other writers of the namespace wait until COMMIT
            ops = list(plan())
            execute_ops(self.dialect, conn, ops, writer)
        return ops

    # -- reading ----------------------------------------------------------------------------

    def _snapshot(self, namespace: str, kind: MemoryKind) -> Snapshot:
        """The committed snapshot of (namespace, kind), caught up with the database.

        A cached snapshot is brought up to date with the rows and tombstones written since
        its revision; only a first read (or a reader further behind than the kept
        tombstones) loads the namespace in full. The returned object is shared: copy it
        before applying ops to it.
        """
        with self._lock:
            stamp = self._stamp()
            snap = self._snapshots.get((namespace, kind))
            if snap is not None and stamp is not None and snap.checked == stamp:
                return snap
            d = self.dialect
            if snap is not None:
                rev, floor = head(d, self._connection(), namespace)
                if snap.rev == rev and rev >= floor:  # nothing new: one indexed read
                    snap.checked = stamp
                    return snap
            # The head, the rows and the tombstones from one consistent read, so the
            # snapshot is the namespace's state at one instant, never a mix of two.
            with self._consistent_read() as conn:
                rev, floor = head(d, conn, namespace)
                if snap is None or snap.rev < floor:
                    rows = snapshot_rows(d, conn, namespace, kind)
                    snap = Snapshot.from_rows(namespace, kind, rows)
                    snap.rev = rev
                    self.reloads += 1
                    self._snapshots[(namespace, kind)] = snap
                elif snap.rev != rev:
                    rows = snapshot_rows(d, conn, namespace, kind, since=snap.rev)
                    snap.catch_up(rows, tombstones(d, conn, namespace, snap.rev), rev)
            snap.checked = stamp
            return snap

    def _fetch(self, namespace: str, ids: Sequence[str]) -> dict[str, MemoryEntry]:
        """The committed entries with these ids in ``namespace``."""
        with self._lock:
            return fetch_entries(self._connection(), namespace, ids, self.dialect)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._lock:
            return list(self._connection().execute(self.dialect.q(sql), params).fetchall())

    def search(
        self, namespace: str, kind: MemoryKind, vector: Sequence[float] | np.ndarray, k: int = 5
    ) -> list[ScoredEntry]:
        """The ``k`` entries of (namespace, kind) most similar (cosine) to ``vector``, best
        first; equal scores go to the newer entry.

        Ranked in numpy over the store's cached float32 snapshot of the namespace (the
        candidate set is that (namespace, kind), kept current incrementally).
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise MemoryConfigError(f"{self!r}.search(k={k!r}): k must be an int >= 0")
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        snap = self._snapshot(namespace, kind)
        if k == 0 or not len(snap):
            return []
        if snap.dim is not None and query.shape[0] != snap.dim:
            raise MemoryConfigError(
                f"{self!r}.search(): the vector has {query.shape[0]} values but the "
                f"{kind!r} entries of namespace {namespace!r} have dim {snap.dim}",
                code="FSM102",
            )
        live = snap.live()
        slots, scores = snap.top(live, snap.cosine(live, query), k)
        found = self._fetch(namespace, [snap.ids[i] for i in slots.tolist()])
        return [
            ScoredEntry(entry=found[snap.ids[i]], score=float(score))
            for i, score in zip(slots.tolist(), scores.tolist(), strict=True)
            if snap.ids[i] in found
        ]

    def search_text(
        self, namespace: str, text: str, k: int = 5, kind: MemoryKind | None = None
    ) -> list[MemoryEntry]:
        """Up to ``k`` entries of ``namespace`` whose content contains ``text``, newest first.

        Case-insensitive (SQLite folds ASCII letters only; PostgreSQL all of them). ``%``
        and ``_`` in ``text`` are matched literally.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise MemoryConfigError(f"{self!r}.search_text(k={k!r}): k must be an int >= 0")
        if not isinstance(text, str) or not text:
            raise MemoryConfigError(
                f"{self!r}.search_text(text={text!r}): pass the non-empty text to look for"
            )
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where, params = (
            ["namespace = ?", f"content {self.dialect.like} ? ESCAPE '\\'"],
            [
                namespace,
                pattern,
            ],
        )
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        rows = self._rows(
            f"SELECT {ENTRY_COLS} FROM {{m}} WHERE {' AND '.join(where)} "
            "ORDER BY timestamp DESC, seq DESC, id DESC LIMIT ?",
            [*params, k],
        )
        return [row_to_entry(row) for row in rows]

    def entries(
        self, namespace: str, kind: MemoryKind | None = None, *, limit: int | None = None
    ) -> list[MemoryEntry]:
        """The committed entries of ``namespace`` (optionally of one kind), oldest first;
        with ``limit``, the oldest ``limit``."""
        where, params = ["namespace = ?"], [namespace]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        tail = ""
        if limit is not None:
            tail = f" LIMIT {int(limit)}"
        rows = self._rows(
            f"SELECT {ENTRY_COLS} FROM {{m}} WHERE {' AND '.join(where)} "
            f"ORDER BY timestamp, seq, id{tail}",
            params,
        )
        return [row_to_entry(row) for row in rows]

    def namespaces(self) -> list[str]:
        """The namespaces that hold at least one committed entry, sorted."""
        return sorted(str(r[0]) for r in self._rows("SELECT DISTINCT namespace FROM {m}", []))

    def inspect(
        self, namespace: str | None = None, kind: MemoryKind | None = None
    ) -> list[MemoryEntry]:
        """Every committed entry (optionally of one namespace and/or kind), oldest first.

        For debugging: when a memory returns nothing, this shows what is actually stored and
        under which namespace and kind.
        """
        where: list[str] = []
        params: list[Any] = []
        if namespace is not None:
            where.append("namespace = ?")
            params.append(namespace)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(
            f"SELECT {ENTRY_COLS} FROM {{m}} {clause} ORDER BY timestamp, seq, id", params
        )
        return [row_to_entry(row) for row in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of committed entries per (namespace, kind)."""
        rows = self._rows(
            "SELECT namespace, kind, count(*) FROM {m} GROUP BY namespace, kind "
            "ORDER BY namespace, kind",
            [],
        )
        return {(str(ns), str(kind)): int(count) for ns, kind, count in rows}
