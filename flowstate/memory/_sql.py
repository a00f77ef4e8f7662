"""The SQL of memory ops and reads, shared by the SQLite and the Postgres store.

Both backends keep the same three tables (names per backend, see :class:`Dialect`):

- ``memories``: one row per live entry, with its float32 embedding (``bytes``/``bytea``) and
  ``rev``, the namespace revision of the transaction that last wrote it;
- ``memory_heads``: per namespace, the last revision (``rev``) and ``floor``, the revision
  up to which tombstones were pruned;
- ``memory_tombstones``: ``(namespace, rev, kind, id)`` for every row a write removed
  (``id`` NULL: the whole kind, or with ``kind`` NULL the whole namespace, was cleared).

Every write transaction that changes a namespace first bumps its head row
(``INSERT ... ON CONFLICT DO UPDATE SET rev = rev + 1``). The bump takes the row's write lock
until COMMIT, so the writers of one namespace commit in revision order (SQLite serialises all
writers anyway). A reader that cached a namespace at revision ``w`` therefore catches up by
reading the rows and tombstones with ``rev > w`` — never the whole namespace (issue 21 item 3).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import MemoryStoreError
from ._ops import KEEP_ORDER_SQL, ClearOp, DeleteOp, MemoryOp, TrimOp, UpsertOp

__all__ = [
    "ENTRY_COLS",
    "KEEP_TOMBSTONES",
    "PRUNE_EVERY",
    "SNAP_COLS",
    "SQLITE",
    "Dialect",
    "OpWriter",
    "apply_ops",
    "execute_ops",
    "head",
    "postgres_dialect",
    "snapshot_rows",
    "tombstones",
]

ENTRY_COLS = "id, namespace, kind, key, content, timestamp, importance, metadata"
"""The columns :func:`~flowstate.memory._snapshot.row_to_entry` reads, in its order."""

SNAP_COLS = "id, key, timestamp, importance, seq, embedding, dim, embedder, rev"
"""The scoring columns a snapshot loads (no content), in the order ``Snapshot`` reads them."""

_WRITE_COLS = (
    "id",
    "namespace",
    "kind",
    "key",
    "content",
    "timestamp",
    "importance",
    "metadata",
    "embedding",
    "dim",
    "seq",
    "embedder",
    "rev",
)

PRUNE_EVERY = 256
"""Tombstones of a namespace are pruned when its revision is a multiple of this."""

KEEP_TOMBSTONES = 4096
"""How many revisions of tombstones are kept; a reader further behind reloads in full."""

_CHUNK = 500  # stay well below SQLite's bound-parameter limit


@dataclass(frozen=True)
class Dialect:
    """What differs between the backends: table names, the parameter mark, error types."""

    name: str
    """``"sqlite"`` or ``"postgres"``."""
    memories: str
    """The (quoted, qualified) name of the entries table."""
    heads: str
    """The name of the per-namespace revision table."""
    tombstones: str
    """The name of the removed-rows table."""
    mark: str
    """The parameter placeholder: ``?`` or ``%s``."""
    like: str
    """The case-insensitive match operator: ``LIKE`` (ASCII only in SQLite) or ``ILIKE``."""
    pk_hint: str
    """Prefix that keeps SQLite's planner on the primary key (``+``); empty for Postgres."""
    errors: tuple[type[BaseException], ...]
    """The driver's error classes, reported as :class:`MemoryStoreError`."""
    in_transaction: Callable[[Any], bool]
    """Whether a connection has an open transaction."""
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def q(self, template: str) -> str:
        """``template`` with ``{m}``, ``{h}``, ``{t}`` and ``?`` filled in for this backend."""
        out = self._cache.get(template)
        if out is None:
            out = (
                template.replace("{m}", self.memories)
                .replace("{h}", self.heads)
                .replace("{t}", self.tombstones)
                .replace("?", self.mark)
            )
            self._cache[template] = out
        return out


def _sqlite_in_transaction(conn: Any) -> bool:
    return bool(conn.in_transaction)


def _sqlite_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    return (sqlite3.Error,)


SQLITE = Dialect(
    name="sqlite",
    memories="memories",
    heads="memory_heads",
    tombstones="memory_tombstones",
    mark="?",
    like="LIKE",
    pk_hint="+",
    errors=_sqlite_errors(),
    in_transaction=_sqlite_in_transaction,
)
"""The SQLite dialect (tables in the main database, next to the checkpoint tables)."""


def _postgres_in_transaction(conn: Any) -> bool:
    from psycopg.pq import TransactionStatus

    return bool(conn.info.transaction_status != TransactionStatus.IDLE)


def _postgres_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.Error,)


def postgres_dialect(schema: str) -> Dialect:
    """The Postgres dialect for tables in ``schema`` (an identifier checked by the caller)."""
    return Dialect(
        name="postgres",
        memories=f'"{schema}"."memories"',
        heads=f'"{schema}"."memory_heads"',
        tombstones=f'"{schema}"."memory_tombstones"',
        mark="%s",
        like="ILIKE",
        pk_hint="",
        errors=_postgres_errors(),
        in_transaction=_postgres_in_transaction,
    )


# -- writing -----------------------------------------------------------------------------

_BUMP = (
    "INSERT INTO {h} AS h (namespace, rev, floor) VALUES (?, 1, 0) "
    "ON CONFLICT (namespace) DO UPDATE SET rev = h.rev + 1 RETURNING rev, floor"
)
_UPSERT = (
    f"INSERT INTO {{m}} ({', '.join(_WRITE_COLS)}) VALUES ({', '.join('?' for _ in _WRITE_COLS)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _WRITE_COLS if c != "id")
)
_TRIM = (
    "DELETE FROM {m} WHERE namespace = ? AND kind = ? AND id NOT IN "
    "(SELECT id FROM {m} WHERE namespace = ? AND kind = ? "
    f"ORDER BY {KEEP_ORDER_SQL} LIMIT ?) RETURNING id"
)


class OpWriter:
    """Applies ops inside one open transaction, bumping each touched namespace once."""

    def __init__(self, dialect: Dialect, conn: Any) -> None:
        self.d = dialect
        self.conn = conn
        self.revs: dict[str, int] = {}
        """The revision this transaction writes for each namespace it touched."""
        self.known: set[str] | None = None
        """Ids that may exist already (``None``: any may); an upsert of an id outside it
        cannot replace a row elsewhere, so its check is skipped (bulk writes)."""

    def prefetch(self, ops: Sequence[MemoryOp]) -> None:
        """Find which of the upserted ids exist already, in a few queries instead of one
        per upsert."""
        ids = list(dict.fromkeys(op.entry.id for op in ops if isinstance(op, UpsertOp)))
        if len(ids) < 2:
            return
        known: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows = self.conn.execute(
                self.d.q(f"SELECT id FROM {{m}} WHERE id IN ({marks})"), chunk
            ).fetchall()
            known.update(str(row[0]) for row in rows)
        self.known = known

    def rev(self, namespace: str) -> int:
        """This transaction's revision of ``namespace`` (bumps and locks its head once)."""
        rev = self.revs.get(namespace)
        if rev is None:
            d, conn = self.d, self.conn
            rev, floor = conn.execute(d.q(_BUMP), (namespace,)).fetchone()
            rev = int(rev)
            if rev % PRUNE_EVERY == 0 and rev - KEEP_TOMBSTONES > int(floor):
                keep_from = rev - KEEP_TOMBSTONES
                conn.execute(
                    d.q("DELETE FROM {t} WHERE namespace = ? AND rev <= ?"), (namespace, keep_from)
                )
                conn.execute(
                    d.q("UPDATE {h} SET floor = ? WHERE namespace = ?"), (keep_from, namespace)
                )
            self.revs[namespace] = rev
        return rev

    def lock(self, namespace: str) -> None:
        """Take the write lock of ``namespace``'s head row (Postgres) without a new revision,
        so what is read next stays true until COMMIT."""
        d, conn = self.d, self.conn
        conn.execute(
            d.q("INSERT INTO {h} (namespace, rev, floor) VALUES (?, 0, 0) ON CONFLICT DO NOTHING"),
            (namespace,),
        )
        conn.execute(d.q("SELECT rev FROM {h} WHERE namespace = ? FOR UPDATE"), (namespace,))

    def _tomb(self, namespace: str, kind: str | None, entry_id: str | None) -> None:
        self.conn.execute(
            self.d.q("INSERT INTO {t} (namespace, rev, kind, id) VALUES (?, ?, ?, ?)"),
            (namespace, self.rev(namespace), kind, entry_id),
        )

    def apply(self, op: MemoryOp) -> None:
        d, conn = self.d, self.conn
        if isinstance(op, UpsertOp):
            entry = op.entry
            rev = self.rev(entry.namespace)
            # The same id elsewhere (another namespace or kind), or another id holding the
            # semantic key here, is replaced: removed with a tombstone so readers drop it.
            if self.known is None or entry.id in self.known:
                for ns, kind, gone in conn.execute(
                    d.q(
                        "DELETE FROM {m} WHERE id = ? AND (namespace <> ? OR kind <> ?) "
                        "RETURNING namespace, kind, id"
                    ),
                    (entry.id, entry.namespace, entry.kind),
                ).fetchall():
                    self._tomb(ns, kind, gone)
            if entry.key is not None:
                for (gone,) in conn.execute(
                    d.q(
                        "DELETE FROM {m} WHERE namespace = ? AND kind = ? AND key = ? "
                        "AND id <> ? RETURNING id"
                    ),
                    (entry.namespace, entry.kind, entry.key, entry.id),
                ).fetchall():
                    self._tomb(entry.namespace, entry.kind, gone)
            conn.execute(d.q(_UPSERT), (*_row(op), rev))
            if self.known is not None:
                self.known.add(entry.id)
        elif isinstance(op, DeleteOp):
            for start in range(0, len(op.ids), _CHUNK):
                chunk = op.ids[start : start + _CHUNK]
                marks = ", ".join("?" for _ in chunk)
                for kind, gone in conn.execute(
                    d.q(
                        f"DELETE FROM {{m}} WHERE {d.pk_hint}namespace = ? AND id IN ({marks}) "
                        "RETURNING kind, id"
                    ),
                    (op.namespace, *chunk),
                ).fetchall():
                    self._tomb(op.namespace, kind, gone)
        elif isinstance(op, ClearOp):
            # always tombstoned (clearing what is empty changes nothing for a reader), and
            # the row count is unknown in a pipeline anyway
            if op.kind is None:
                conn.execute(d.q("DELETE FROM {m} WHERE namespace = ?"), (op.namespace,))
            else:
                conn.execute(
                    d.q("DELETE FROM {m} WHERE namespace = ? AND kind = ?"),
                    (op.namespace, op.kind),
                )
            self._tomb(op.namespace, op.kind, None)
        else:
            assert isinstance(op, TrimOp)
            for (gone,) in conn.execute(
                d.q(_TRIM), (op.namespace, op.kind, op.namespace, op.kind, op.capacity)
            ).fetchall():
                self._tomb(op.namespace, op.kind, gone)


def _row(op: UpsertOp) -> tuple[object, ...]:
    entry = op.entry
    blob = None if op.embedding is None else base64.b64decode(op.embedding)
    return (
        entry.id,
        entry.namespace,
        entry.kind,
        entry.key,
        entry.content,
        entry.timestamp,
        entry.importance,
        json.dumps(entry.metadata, separators=(",", ":"), sort_keys=True),
        blob,
        op.dim,
        op.seq,
        op.embedder,
    )


def execute_ops(
    dialect: Dialect, conn: Any, ops: Sequence[MemoryOp], writer: OpWriter | None = None
) -> None:
    """Apply ``ops`` in order inside the transaction already open on ``conn``.

    Never BEGINs, COMMITs or rolls back: the caller owns the transaction (the engine
    committing an activation, or a store's own write). Idempotent: ops carry every value
    they write, so applying them twice leaves the same entries.
    """
    if not ops:
        return
    if not dialect.in_transaction(conn):
        begin = "BEGIN IMMEDIATE" if dialect.name == "sqlite" else "BEGIN"
        raise MemoryStoreError(
            f"apply_ops() got {len(ops)} op(s) but the connection has no open transaction, "
            "so they would not commit together with the caller's writes: run "
            f"conn.execute('{begin}') first, then apply_ops(conn, ops), then COMMIT",
            code="FSM202",
        )
    writer = writer or OpWriter(dialect, conn)
    try:
        writer.prefetch(ops)
    except dialect.errors as err:
        raise _store_error(dialect, err, "reading the ids of the upserts") from err
    if dialect.name == "postgres":
        # Take the namespaces' head locks in one global order before anything else, so two
        # activations writing the same namespaces in opposite orders cannot deadlock.
        touched = {op.entry.namespace if isinstance(op, UpsertOp) else op.namespace for op in ops}
        for namespace in sorted(touched):
            writer.rev(namespace)
    # Postgres: pipeline the statements (an upsert of a new id needs no answer), so a
    # batch of writes costs a few round trips rather than one per statement.
    pipeline = conn.pipeline() if dialect.name == "postgres" and len(ops) > 1 else None
    applied = 0
    try:
        with pipeline if pipeline is not None else contextlib.nullcontext():
            for op in ops:
                writer.apply(op)
                applied += 1
    except dialect.errors as err:
        if pipeline is not None:  # the failing statement is known only to the server
            what = f"one of {len(ops)} memory ops"
        else:
            op = ops[applied]
            what = f"memory op #{applied} ({op.op}{_culprit(op)})"
        raise _store_error(dialect, err, what) from err


def _store_error(dialect: Dialect, err: BaseException, what: str) -> MemoryStoreError:
    text = str(err)
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        fix = (
            "call flowstate.memory.ensure_schema(db) once before applying memory ops"
            if dialect.name == "sqlite"
            else "open a PostgresMemoryStore on this schema once (it creates them)"
        )
        return MemoryStoreError(
            f"the memory tables do not exist in this database: {fix}", code="FSM201"
        )
    return MemoryStoreError(f"{dialect.name} failed on {what}: {err}", code="FSM201")


def _culprit(op: MemoryOp) -> str:
    if isinstance(op, UpsertOp):
        return f" of entry {op.entry.id!r} in namespace {op.entry.namespace!r}"
    return f" in namespace {op.namespace!r}"


def apply_ops(conn: Any, ops: Sequence[MemoryOp]) -> None:
    """Execute ``ops`` in order on an SQLite ``conn`` inside the transaction the caller opened.

    It never issues ``BEGIN``, ``COMMIT`` or ``ROLLBACK``: the caller (the engine committing a
    node's checkpoint) owns the transaction, which should start with ``BEGIN IMMEDIATE``.
    Idempotent: applying the same ops twice leaves the same entries. Needs the schema of
    :func:`ensure_schema`. (A Postgres store has the method
    :meth:`PostgresMemoryStore.apply_ops` for a psycopg connection.)
    """
    execute_ops(SQLITE, conn, ops)


# -- reading -----------------------------------------------------------------------------


def head(dialect: Dialect, conn: Any, namespace: str) -> tuple[int, int]:
    """``(rev, floor)`` of ``namespace``; ``(0, 0)`` when it was never written."""
    row = conn.execute(
        dialect.q("SELECT rev, floor FROM {h} WHERE namespace = ?"), (namespace,)
    ).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def snapshot_rows(
    dialect: Dialect, conn: Any, namespace: str, kind: str, since: int | None = None
) -> list[Sequence[Any]]:
    """The :data:`SNAP_COLS` of (namespace, kind), all of them or those with ``rev > since``."""
    if since is None:
        return conn.execute(
            dialect.q(f"SELECT {SNAP_COLS} FROM {{m}} WHERE namespace = ? AND kind = ?"),
            (namespace, kind),
        ).fetchall()
    return conn.execute(
        dialect.q(
            f"SELECT {SNAP_COLS} FROM {{m}} WHERE namespace = ? AND kind = ? AND rev > ? "
            "ORDER BY rev"
        ),
        (namespace, kind, since),
    ).fetchall()


def tombstones(
    dialect: Dialect, conn: Any, namespace: str, since: int
) -> list[tuple[int, str | None, str | None]]:
    """``(rev, kind, id)`` of the removals in ``namespace`` after revision ``since``."""
    rows = conn.execute(
        dialect.q("SELECT rev, kind, id FROM {t} WHERE namespace = ? AND rev > ? ORDER BY rev"),
        (namespace, since),
    ).fetchall()
    return [(int(r[0]), r[1], r[2]) for r in rows]
