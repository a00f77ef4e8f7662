"""``PostgresStore``'s connection: connecting (and re-connecting after a drop or a
fork), the schema migrations, ``BEGIN`` … ``COMMIT`` write transactions, reads, and the
SQL of decoded selects and inserts."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from flowstate._crashpoints import crash_point
from flowstate.errors import ConfigError, StoreError, StoreIOError

from ._common import decode_row, hashed_columns
from ._postgres_schema import _MIGRATIONS, FLEET_TABLES, MIGRATIONS, SCHEMA_NAME, TABLES

__all__ = ["PostgresConnection", "ids"]

_KEYS = {
    "steps": ("run_id", "step"),
    "effects": ("run_id", "step", "task_path", "seq"),
    "interrupts": ("run_id", "step", "task_path", "seq"),
}
"""Primary keys of the tables written with replace semantics (SQLite's INSERT OR REPLACE)."""


def ids(*names: str) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


class PostgresConnection:
    """One connection (autocommit, explicit ``BEGIN``/``COMMIT``) serialised by an
    ``RLock``; the base of ``PostgresStore``."""

    def __init__(
        self, dsn: str, *, schema: str = "flowstate", min_size: int = 1, migrate: bool = True
    ) -> None:
        """``migrate=False`` skips the migrations (as in ``SQLiteStore``): the schema is used
        as it is, for diagnosis (``flowstate doctor``) or with a role that may not create
        tables; ``integrity_check`` and ``table_sizes`` report what is there."""
        if not isinstance(schema, str) or not SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"schema must be a plain SQL identifier (letters, digits and '_', not "
                f"starting with a digit, at most 63 characters), not {schema!r}"
            )
        if schema.lower().startswith("pg_"):
            raise ConfigError(f"schema {schema!r}: the prefix 'pg_' is reserved by PostgreSQL")
        if min_size not in (0, 1):
            raise ConfigError(
                f"min_size must be 0 (connect on first use) or 1 (connect now), not "
                f"{min_size!r}: a PostgresStore holds one connection; open one store per "
                "worker for more parallelism"
            )
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as e:
            raise ConfigError(f"invalid PostgreSQL connection string: {e}") from None
        self.dsn = dsn
        self.schema = schema
        self.min_size = min_size
        self._connect_kwargs: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = 10
        if "application_name" not in params:
            self._connect_kwargs["application_name"] = "flowstate"
        host = params.get("host") or params.get("hostaddr") or "localhost"
        port = params.get("port") or "5432"
        self._where = f"PostgreSQL {host}:{port}/{params.get('dbname', '')} schema {schema!r}"
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        self._inherited: list[psycopg.Connection[Any]] = []
        self._closed = False
        self._migrated = not migrate
        self._migrating = False
        self.fences: dict[str, tuple[str, int]] = {}
        """run id -> (owner, epoch) this store object writes for; every write touching a
        fenced run checks, inside its transaction, that the epoch is still current."""
        self.commits = 0
        """Number of write transactions committed by this store object (for tests)."""
        self.database_id: str | None = None
        """The id in the schema's ``meta`` row, checked on every new connection."""
        self._checked_conn: psycopg.Connection[Any] | None = None
        names = (*TABLES, "migrations", "blobs", "meta", "schedules", "firings", *FLEET_TABLES)
        self._t = {name: sql.Identifier(schema, name) for name in names}
        self._sql_cache: dict[str, sql.Composed] = {}
        if min_size:
            with self._lock:
                self._connection()

    def __repr__(self) -> str:
        return f"PostgresStore({self._where})"

    # -- connection ---------------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The live connection (opened, or re-opened after a drop, on access)."""
        with self._lock:
            return self._connection()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreIOError(f"the checkpoint store on {self._where} is closed")
        c = self._conn
        if c is not None and self._pid != os.getpid():
            # inherited through fork(): the socket is the parent's. Never close it here
            # (that would end the parent's session); keep a reference so it is never
            # finalised in this process, and open our own.
            self._inherited.append(c)
            self._pid, c, self._conn = os.getpid(), None, None
        if c is None or c.closed or c.broken:
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()
            self._conn = None
            try:
                c = psycopg.connect(self.dsn, autocommit=True, **self._connect_kwargs)
            except psycopg.Error as e:
                raise StoreIOError(f"cannot connect to {self._where}: {e}") from e
            self._conn = c
        if not self._migrated and not self._migrating:
            self._migrating = True
            try:
                self._migrate()
            finally:
                self._migrating = False
            c = self._conn
            assert c is not None
        if self._checked_conn is not c and not self._migrating:
            self._check_identity(c)
        return c

    def _check_identity(self, c: psycopg.Connection[Any]) -> None:
        """On every new connection: the schema still holds the database this store first
        connected to (a schema dropped and re-created meanwhile is refused)."""
        try:
            row = c.execute(
                self._q('SELECT "value" FROM {meta} WHERE "key" = %s'), ["database_id"]
            ).fetchone()
        except psycopg.Error:
            row = None  # opened with migrate=False on an older schema
            with contextlib.suppress(psycopg.Error):
                c.execute("ROLLBACK")
        got = str(row[0]) if row else None
        if self.database_id is not None and got != self.database_id:
            self._drop_connection()
            raise StoreIOError(
                f"the checkpoint schema on {self._where} no longer holds database "
                f"{self.database_id} (it holds {got or 'none'}): it was dropped or re-created "
                "while this process was using it; nothing was written"
            )
        self.database_id = got
        self._checked_conn = c

    def _q(self, template: str) -> sql.Composed:
        """``template`` with ``{runs}``, ``{steps}`` … replaced by the schema-qualified,
        quoted table names (cached)."""
        q = self._sql_cache.get(template)
        if q is None:
            q = self._sql_cache[template] = sql.SQL(template).format(**self._t)  # type: ignore[arg-type]
        return q

    def _stmt(self, template: str) -> sql.Composed:
        """A statement written with ``?`` parameters and ``{table}`` names (shared with
        ``SQLiteStore``, see ``_sql_leases``) in this store's form."""
        return self._q(template.replace("?", "%s"))

    def _applied_migrations(self, c: psycopg.Connection[Any]) -> set[str] | None:
        """Names in the migrations table, or None when the table does not exist."""
        exists = c.execute(
            "SELECT to_regclass(%s::text) IS NOT NULL",
            [sql.Identifier(self.schema, "migrations").as_string(c)],
        ).fetchone()
        if not exists or not exists[0]:
            return None
        return {str(r[0]) for r in c.execute(self._q('SELECT "name" FROM {migrations}'))}

    def _migrate(self) -> None:
        c = self._conn
        assert c is not None
        try:
            # the common case, an up-to-date schema: two reads, no lock, no write
            if self._applied_migrations(c) == set(MIGRATIONS):
                self._migrated = True
                return
        except psycopg.Error as e:
            self._drop_connection()
            raise StoreIOError(f"cannot read the checkpoint schema on {self._where}: {e}") from e
        try:
            with self.write() as c:
                # serialises concurrent openers of the same schema until COMMIT
                c.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s::text, 0))",
                    [f"flowstate.migrate:{self.schema}"],
                )
                c.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                c.execute(
                    self._q(
                        "CREATE TABLE IF NOT EXISTS {migrations} ("
                        '"name" text COLLATE "C" PRIMARY KEY, '
                        '"applied_at" double precision NOT NULL)'
                    )
                )
                done = {str(r[0]) for r in c.execute(self._q('SELECT "name" FROM {migrations}'))}
                unknown = sorted(done - set(MIGRATIONS))
                if unknown:
                    raise StoreError(
                        f"the checkpoint schema on {self._where} has migrations this version "
                        f"of flowstate does not know ({', '.join(unknown)}): it was created by "
                        "a newer flowstate; upgrade flowstate to use it"
                    )
                for name, statements in _MIGRATIONS:
                    if name in done:
                        continue
                    # one round trip: statements without parameters go as one simple query
                    c.execute(sql.SQL(";\n").join(self._q(stmt) for stmt in statements))
                    c.execute(
                        self._q('INSERT INTO {migrations} ("name", "applied_at") VALUES (%s, %s)'),
                        [name, time.time()],
                    )
        except StoreError as e:
            self._drop_connection()
            cause = e.__cause__
            if not isinstance(cause, psycopg.Error):
                raise
            raise StoreIOError(
                f"cannot create or migrate the checkpoint schema on {self._where}: {cause}"
            ) from cause
        self._migrated = True

    def _drop_connection(self) -> None:
        c, self._conn = self._conn, None
        if c is not None:
            with contextlib.suppress(Exception):
                c.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_connection()

    # -- transactions -------------------------------------------------------------------

    def _begin(self) -> psycopg.Connection[Any]:
        for attempt in (1, 2):
            c = self._connection()
            try:
                c.execute("BEGIN")
                return c
            except psycopg.Error as e:
                if attempt == 1 and (c.closed or c.broken):
                    continue  # dropped while idle: nothing was sent, reconnect once
                raise StoreIOError(f"cannot start a write transaction on {self._where}: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _rollback(self, c: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(Exception):
            c.execute("ROLLBACK")

    @contextlib.contextmanager
    def write(self) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction: ``BEGIN`` … ``COMMIT`` on the store's connection.

        If the body raises, the transaction is rolled back, then a constraint violation
        (``psycopg.IntegrityError``) is re-raised as ``StoreError`` and any other
        ``psycopg.Error`` (lost connection, server shutdown, value PostgreSQL cannot
        store) as ``StoreIOError``, with the psycopg error as ``__cause__``. Everything
        else (flowstate's own errors, ``ValueError``, ``BaseException`` s) propagates
        unchanged.
        """
        with self._lock:
            crash_point("store.before_begin")
            c = self._begin()
            try:
                yield c
            except BaseException as e:
                self._rollback(c)
                # flowstate's own errors, ValueError etc. and BaseExceptions (cancellation,
                # simulated crashes) propagate unchanged; the database's are typed as storage
                if isinstance(e, psycopg.IntegrityError):
                    raise StoreError(
                        f"write refused by a constraint of the checkpoint store on "
                        f"{self._where}: {e}; nothing of this transaction was kept. A UNIQUE "
                        "failure means the row is already stored (another process may be "
                        "running the same run)"
                    ) from e
                if isinstance(e, psycopg.Error):
                    raise StoreIOError(
                        f"write failed on {self._where}: {e}; the transaction was rolled back"
                    ) from e
                raise
            try:
                crash_point("store.before_commit")
            except BaseException:
                # a simulated death: the server rolls back a dead session's transaction
                self._rollback(c)
                raise
            try:
                c.execute("COMMIT")
            except psycopg.Error as e:
                self._rollback(c)
                raise StoreIOError(
                    f"commit failed on {self._where}: {e}. If the connection was lost during "
                    "COMMIT the transaction may or may not have been applied"
                ) from e
            self.commits += 1
            crash_point("store.after_commit")

    def _read(
        self, query: sql.Composed | sql.SQL, params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        with self._lock:
            for attempt in (1, 2):
                c = self._connection()
                try:
                    return c.execute(query, params).fetchall()
                except psycopg.Error as e:
                    if attempt == 1 and (c.closed or c.broken):
                        continue  # reads are idempotent: retry once on a new connection
                    raise StoreIOError(f"read failed on {self._where}: {e}") from e
            raise AssertionError("unreachable")  # pragma: no cover

    # -- row decoding -------------------------------------------------------------------

    def _decode(self, table: str, row: Sequence[Any]) -> Any:
        return decode_row(table, row)

    def _columns(self, table: str) -> sql.Composed:
        return ids(*hashed_columns(table))

    def _select(self, table: str, where: str, params: Sequence[Any], order: str = "") -> list[Any]:
        """Rows of ``table`` matching ``where`` (SQL text of this module, never input),
        decoded and verified."""
        key = f"select:{table}:{where}:{order}"
        q = self._sql_cache.get(key)
        if q is None:
            q = sql.SQL("SELECT {} FROM {} WHERE ").format(
                self._columns(table), self._t[table]
            ) + sql.SQL(where.replace("?", "%s") + (f" ORDER BY {order}" if order else ""))  # type: ignore[operator]
            self._sql_cache[key] = q
        return [self._decode(table, r) for r in self._read(q, params)]

    def _insert(self, table: str, cols: Sequence[str], mode: str = "") -> sql.Composed:
        """INSERT of ``cols`` plus ``hash``; ``mode`` is "" (plain), "ignore" (keep the
        existing row, SQLite's INSERT OR IGNORE) or "replace" (INSERT OR REPLACE)."""
        key = f"insert:{table}:{mode}:{','.join(cols)}"
        q = self._sql_cache.get(key)
        if q is None:
            names = (*cols, "hash")
            q = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                self._t[table], ids(*names), sql.SQL(", ").join(sql.Placeholder() * len(names))
            )
            if mode == "ignore":
                q += sql.SQL(" ON CONFLICT DO NOTHING")
            elif mode == "replace":
                keys = _KEYS[table]
                q += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                    ids(*keys),
                    sql.SQL(", ").join(
                        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                        for n in names
                        if n not in keys
                    ),
                )
            self._sql_cache[key] = q
        return q
