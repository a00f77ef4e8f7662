"""``PostgresMemoryStore``: agent memory in a PostgreSQL schema, for fleets of workers.

The same tables, ops and contract as :class:`~flowstate.memory.MemoryStore` (SQLite), in
the schema of a Postgres checkpoint store, so the engine commits a node's memory writes in
the transaction of its activation. Embeddings are ``bytea`` holding little-endian float32;
retrieval ranks them in numpy over the store's cached snapshot of the (namespace, kind),
which a reader keeps current by fetching only the rows and tombstones written after its
revision (``_sql.py``). pgvector is not used: it is not packaged for this Debian release.

Needs ``psycopg`` (``pip install 'flowstate[postgres]'``).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ._backend import BaseMemoryStore
from ._embed import Embedder
from ._errors import MemoryConfigError, MemoryStoreError
from ._models import MemoryEntry, MemoryKind
from ._snapshot import Snapshot
from ._sql import postgres_dialect

T = TypeVar("T")

__all__ = ["MIGRATIONS", "PostgresMemoryStore"]

_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_memories",
        [
            'CREATE TABLE {m} (id text COLLATE "C" PRIMARY KEY, '
            'namespace text COLLATE "C" NOT NULL, kind text COLLATE "C" NOT NULL, '
            'key text COLLATE "C", content text NOT NULL, '
            "timestamp double precision NOT NULL, importance double precision NOT NULL, "
            "metadata text NOT NULL DEFAULT '{{}}', embedding bytea, dim integer, "
            "seq bigint NOT NULL, embedder text, rev bigint NOT NULL DEFAULT 0)",
            "CREATE INDEX memories_namespace_kind_rev ON {m} (namespace, kind, rev)",
            "CREATE UNIQUE INDEX memories_namespace_kind_key ON {m} (namespace, kind, key) "
            "WHERE key IS NOT NULL",
            'CREATE TABLE {h} (namespace text COLLATE "C" PRIMARY KEY, rev bigint NOT NULL, '
            "floor bigint NOT NULL)",
            'CREATE TABLE {t} (namespace text COLLATE "C" NOT NULL, rev bigint NOT NULL, '
            'kind text COLLATE "C", id text COLLATE "C")',
            "CREATE INDEX memory_tombstones_namespace_rev ON {t} (namespace, rev)",
        ],
    ),
]
"""Versioned DDL, recorded in ``<schema>.memory_migrations``; never edit an applied one."""


class PostgresMemoryStore(BaseMemoryStore):
    """Memories in the PostgreSQL schema ``schema`` (created if missing), shared by every
    process and machine that opens it.

    ``PostgresMemoryStore("postgresql://host/db", schema="flowstate")`` connects, creates
    the memory tables (once, under an advisory lock) and is ready; use it like
    :class:`~flowstate.memory.MemoryStore`. Writers of one namespace serialise on the
    namespace's head row; readers never block. One connection per store object, serialised
    by a lock (re-opened after a drop or a fork).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "flowstate",
        embedder: Embedder | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
            raise MemoryConfigError(
                f"PostgresMemoryStore(schema={schema!r}): the schema must be a plain SQL "
                "identifier (letters, digits and '_', not starting with a digit, at most 63 "
                "characters)"
            )
        try:
            import psycopg
        except ImportError as err:  # pragma: no cover - psycopg is in the dev extra
            raise MemoryConfigError(
                "PostgresMemoryStore needs psycopg: pip install 'flowstate[postgres]'"
            ) from err
        super().__init__(embedder)
        self._psycopg = psycopg
        self.dsn = dsn
        self.schema = schema
        self.dialect = postgres_dialect(schema)
        self._timeout = connect_timeout
        self._conn: Any = None
        self._pid = os.getpid()
        self._closed = False
        self._writing = False
        self._migrate()

    def _where(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.dsn)
        host = info.get("host") or info.get("hostaddr") or "localhost"
        where = f"{host}:{info.get('port') or 5432}/{info.get('dbname', '')}"
        return f"{where!r} schema {self.schema!r}"

    # -- connection -------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._closed:
            raise MemoryStoreError(f"{self!r} is closed", code="FSM201")
        conn = self._conn
        if conn is not None and self._pid != os.getpid():
            # inherited through fork(): the socket is the parent's; leave it to the parent
            conn, self._conn, self._pid = None, None, os.getpid()
        if conn is None or conn.closed or conn.broken:
            try:
                conn = self._psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=max(1, int(self._timeout))
                )
            except self._psycopg.Error as err:
                raise MemoryStoreError(
                    f"cannot connect to PostgreSQL for {self!r}: {err}", code="FSM201"
                ) from err
            self._conn = conn
        return conn

    @property
    def conn(self) -> Any:
        """The store's psycopg connection (autocommit; writes use explicit transactions)."""
        with self._lock:
            return self._connection()

    def close(self) -> None:
        """Close the store's connection."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    conn.close()

    @contextlib.contextmanager
    def _consistent_read(self) -> Iterator[Any]:
        conn = self._connection()
        if self.dialect.in_transaction(conn):  # a write of ours: the namespace is locked
            yield conn
            return
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.execute("COMMIT")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """``BEGIN`` … ``COMMIT`` on the store's connection; rolled back if the body raises."""
        conn = self._connection()
        if self.dialect.in_transaction(conn):
            raise MemoryStoreError(
                f"a transaction is already open on the connection of {self!r}, so a memory "
                "write cannot start its own: give the memory a buffer and call "
                "store.apply_ops(conn, ops) inside your transaction",
                code="FSM202",
            )
        try:
            conn.execute("BEGIN")
        except self._psycopg.Error as err:
            if not (conn.closed or conn.broken):
                raise MemoryStoreError(
                    f"cannot start a write transaction on {self!r}: {err}", code="FSM201"
                ) from err
            conn = self._connection()  # dropped while idle: nothing was sent, reconnect once
            conn.execute("BEGIN")
        self._writing = True
        try:
            yield conn
        except BaseException as err:
            self._writing = False
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            if isinstance(err, self._psycopg.Error):
                raise MemoryStoreError(
                    f"a memory write failed on {self!r}: {err}; nothing of it was kept",
                    code="FSM201",
                ) from err
            raise
        self._writing = False
        try:
            conn.execute("COMMIT")
        except self._psycopg.Error as err:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            raise MemoryStoreError(
                f"COMMIT failed on {self!r}: {err}. If the connection was lost during COMMIT "
                "the write may or may not have been applied; ops are idempotent, so retry",
                code="FSM201",
            ) from err

    def _read(self, read: Callable[[], T]) -> T:
        """Run a read; a connection the server dropped while idle (restart, failover, idle
        timeout) is replaced and the read retried once. Reads inside a write transaction
        are not retried: the transaction is gone with its connection."""
        for attempt in (1, 2):
            try:
                return read()
            except self._psycopg.Error as err:
                conn = self._conn
                dropped = conn is None or conn.closed or conn.broken
                if attempt == 1 and dropped and not self._writing:
                    continue
                raise MemoryStoreError(
                    f"a memory read failed on {self!r}: {err}", code="FSM201"
                ) from err
        raise AssertionError("unreachable")  # pragma: no cover

    def _rows(self, sql: str, params: Any) -> list[Any]:
        return self._read(lambda: BaseMemoryStore._rows(self, sql, params))

    def _snapshot(self, namespace: str, kind: MemoryKind) -> Snapshot:
        return self._read(lambda: BaseMemoryStore._snapshot(self, namespace, kind))

    def _fetch(self, namespace: str, ids: Sequence[str]) -> dict[str, MemoryEntry]:
        return self._read(lambda: BaseMemoryStore._fetch(self, namespace, ids))

    # -- schema -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        d = self.dialect
        table = f'"{self.schema}"."memory_migrations"'
        try:
            with self._lock:
                conn = self._connection()
                done = self._applied(conn, table)
                if done is not None and done >= {name for name, _ in MIGRATIONS}:
                    return
                with self._transaction() as conn:
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        (f"flowstate.memory.migrate:{self.schema}",),
                    )
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {table} "
                        '(name text COLLATE "C" PRIMARY KEY, applied_at double precision NOT NULL)'
                    )
                    done = self._applied(conn, table) or set()
                    for name, statements in MIGRATIONS:
                        if name in done:
                            continue
                        for statement in statements:
                            conn.execute(
                                statement.replace("{{}}", "{}")
                                .replace("{m}", d.memories)
                                .replace("{h}", d.heads)
                                .replace("{t}", d.tombstones)
                            )
                        conn.execute(
                            f"INSERT INTO {table} (name, applied_at) VALUES (%s, %s)",
                            (name, time.time()),
                        )
        except self._psycopg.Error as err:
            raise MemoryStoreError(
                f"could not create or migrate the memory tables of {self!r}: {err}. Check "
                "that the role may create tables in this schema",
                code="FSM201",
            ) from err

    @staticmethod
    def _applied(conn: Any, table: str) -> set[str] | None:
        (exists,) = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if not exists:
            return None
        return {str(r[0]) for r in conn.execute(f"SELECT name FROM {table}").fetchall()}
