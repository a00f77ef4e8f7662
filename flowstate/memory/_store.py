"""``MemoryStore``: the SQLite file (through sqlite-utils) that every memory persists in."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from sqlite_utils import Database

from ._embed import Embedder, HashingEmbedder
from ._errors import MemoryConfigError, MemoryStoreError
from ._models import MEMORY_KINDS, MemoryEntry, MemoryKind
from ._ops import TABLE, MemoryOp, apply_ops
from ._schema import ensure_schema
from ._snapshot import Snapshot, fetch_entries, row_to_entry

if TYPE_CHECKING:
    from ._composite import CompositeMemory
    from ._kinds import EpisodicMemory, SemanticMemory, WorkingMemory
    from ._reflection import CompleteFn, ReflectionLLM, ReflectionMemory

__all__ = ["MemoryStore"]


class MemoryStore:
    """Memories persisted in one SQLite file, shared by every process that opens it.

    ``MemoryStore("agent.db")`` opens (or creates) the file, switches it to WAL, and creates
    the ``memories`` table. ``MemoryStore(db)`` uses an existing ``sqlite_utils.Database``,
    e.g. the engine's checkpoint database, so memories and checkpoints share one file and one
    transaction.

    Every write transaction the store opens starts with ``BEGIN IMMEDIATE``: it takes the
    write lock up front, so concurrent processes queue on the busy timeout instead of failing
    with "database is locked" when a deferred read transaction tries to upgrade.

    Get memories with :meth:`memory` (one kind) or :meth:`composite`. Each namespace (an agent,
    a user, a crew) is isolated; two stores on the same file see each other's commits.
    """

    def __init__(
        self,
        path_or_db: str | pathlib.Path | Database,
        *,
        embedder: Embedder | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``timeout``: seconds a write waits for another process's write lock."""
        if isinstance(path_or_db, Database):
            self.db = path_or_db
            self._owns_db = False
        elif isinstance(path_or_db, (str, pathlib.Path)):
            conn = sqlite3.connect(str(path_or_db), timeout=timeout)
            self.db = Database(conn)
            self._owns_db = True
        else:
            raise MemoryConfigError(
                f"MemoryStore() takes a file path or a sqlite_utils.Database, got "
                f"{type(path_or_db).__name__}: wrap a sqlite3 connection as Database(conn)"
            )
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        """The embedder memories of this store use unless given their own."""
        if self.db.conn.in_transaction:
            raise MemoryStoreError(
                "MemoryStore() was given a database with an open transaction; WAL mode and "
                "the schema must be set up outside it: create the store before BEGIN",
                code="FSM202",
            )
        try:
            if not self.db.memory and self.db.journal_mode != "wal":
                self.db.enable_wal()
        except sqlite3.Error as err:
            raise MemoryStoreError(
                f"could not switch {self._where()} to WAL mode: {err}", code="FSM201"
            ) from err
        ensure_schema(self.db)
        self._snapshots: dict[tuple[str, MemoryKind], Snapshot] = {}
        self._stamp: tuple[int, int] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The underlying sqlite3 connection."""
        return self.db.conn

    def close(self) -> None:
        """Close the connection if this store opened it (a passed-in Database stays open)."""
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore({self._where()})"

    def _where(self) -> str:
        for _, name, filename in self.conn.execute("PRAGMA database_list"):
            if name == "main":
                return repr(filename) if filename else "':memory:'"
        return "'?'"  # pragma: no cover

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
        buffer every write commits at once in its own ``BEGIN IMMEDIATE`` transaction.
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

    # -- writing --------------------------------------------------------------------------

    def apply_ops(self, conn: sqlite3.Connection, ops: Sequence[MemoryOp]) -> None:
        """Apply ``ops`` inside the caller's open transaction on ``conn`` (no BEGIN/COMMIT).

        This is the engine's seam: a node's buffered memory ops commit, or roll back, with
        the node's checkpoint. See :func:`flowstate.memory.apply_ops`.
        """
        apply_ops(conn, ops)

    def commit(self, ops: Sequence[MemoryOp]) -> None:
        """Apply buffered ``ops`` in one ``BEGIN IMMEDIATE`` transaction of this store."""
        ops = list(ops)
        self._write(lambda: ops)

    def _write(self, plan: Callable[[], Sequence[MemoryOp]]) -> list[MemoryOp]:
        """Run ``plan`` and apply the ops it returns in one ``BEGIN IMMEDIATE`` transaction.

        ``plan`` runs under the write lock, so what it reads (e.g. the id that holds a
        semantic key) cannot change before its ops commit. Returns the applied ops.
        """
        conn = self.conn
        if conn.in_transaction:
            raise MemoryStoreError(
                f"a transaction is already open on the connection of {self!r}, so a memory "
                "write cannot start its own: give the memory a buffer "
                "(store.memory(kind, namespace, buffer=ops)) and call "
                "store.apply_ops(conn, ops) inside your transaction",
                code="FSM202",
            )
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise MemoryStoreError(
                f"could not take the write lock of {self._where()}: {err}. Another process "
                "held it longer than the store's timeout; retry, or raise "
                "MemoryStore(..., timeout=...)",
                code="FSM201",
            ) from err
        try:
            ops = list(plan())
            in_sync = self._stamp == self._read_stamp()
            apply_ops(conn, ops)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._stamp = None
            raise
        if in_sync:
            for snap in self._snapshots.values():
                if snap.apply_relevant(ops):
                    snap.compact()
            self._stamp = self._read_stamp()
        else:
            self._stamp = None
        return ops

    # -- reading --------------------------------------------------------------------------

    def _read_stamp(self) -> tuple[int, int]:
        # data_version changes when another connection commits; total_changes when this one
        # writes. Either means the cached snapshots may be stale.
        (version,) = self.conn.execute("PRAGMA data_version").fetchone()
        return int(version), self.conn.total_changes

    def _snapshot(self, namespace: str, kind: MemoryKind) -> Snapshot:
        """The committed snapshot of (namespace, kind), cached until the database changes.

        The returned object is shared: copy it before applying ops to it.
        """
        stamp = self._read_stamp()
        if stamp != self._stamp:
            self._snapshots.clear()
            self._stamp = stamp
        snap = self._snapshots.get((namespace, kind))
        if snap is None:
            snap = Snapshot.load(self.conn, namespace, kind)
            self._snapshots[(namespace, kind)] = snap
        return snap

    def _fetch(self, namespace: str, ids: Sequence[str]) -> dict[str, MemoryEntry]:
        """The committed entries with these ids in ``namespace``."""
        return fetch_entries(self.conn, namespace, ids)

    def inspect(
        self, namespace: str | None = None, kind: MemoryKind | None = None
    ) -> list[MemoryEntry]:
        """Every committed entry (optionally of one namespace and/or kind), oldest first.

        For debugging: when a memory returns nothing, this shows what is actually stored and
        under which namespace and kind.
        """
        where, params = [], []
        if namespace is not None:
            where.append("namespace = ?")
            params.append(namespace)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.conn.execute(
            "SELECT id, namespace, kind, key, content, timestamp, importance, metadata "
            f"FROM {TABLE} {clause} ORDER BY timestamp, seq, id",
            params,
        )
        return [row_to_entry(row) for row in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of committed entries per (namespace, kind)."""
        rows = self.conn.execute(
            f"SELECT namespace, kind, count(*) FROM {TABLE} GROUP BY namespace, kind "
            "ORDER BY namespace, kind"
        )
        return {(namespace, kind): count for namespace, kind, count in rows}
