"""``PostgresStore``'s connections: a pool (psycopg-pool) re-opened after a fork, with
lost connections replaced, the schema migrations, ``BEGIN`` … ``COMMIT`` write
transactions, reads, and the SQL of decoded selects and inserts."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, LiteralString, cast

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from flowstate._crashpoints import crash_point
from flowstate.errors import ConfigError, StoreError, StoreIOError

from ._common import decode_row, hashed_columns
from ._crypto import Keyring, RowCipher
from ._postgres_schema import _MIGRATIONS, FLEET_TABLES, MIGRATIONS, SCHEMA_NAME, TABLES

__all__ = ["PostgresConnection", "ids"]

_KEYS = {
    "steps": ("run_id", "step"),
    "effects": ("run_id", "step", "task_path", "seq"),
    "interrupts": ("run_id", "step", "task_path", "seq"),
}
"""Primary keys of the tables written with replace semantics (SQLite's INSERT OR REPLACE)."""


def _render(q: sql.Composable) -> sql.SQL:
    """``q`` as plain SQL text: the identifiers quoted once, not at every execute."""
    return sql.SQL(cast("LiteralString", q.as_string(None)))


def ids(*names: str) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


class PostgresConnection:
    """A pool of connections (psycopg-pool; autocommit, explicit ``BEGIN``/``COMMIT``);
    the base of ``PostgresStore``."""

    _fast_commit: bool | None = None
    """Whether the schema has ``commit_fn`` (migration ``m850_commit_fn``, see
    ``PostgresStore.commit``): set by the migration check; None when it was skipped
    (``migrate=False``: looked up once, at the first commit)."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "flowstate",
        min_size: int = 1,
        max_size: int = 4,
        migrate: bool = True,
        encryption: Keyring | None = None,
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
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise ConfigError(
                f"min_size must be a whole number of connections opened up front (0: connect "
                f"on first use), not {min_size!r}"
            )
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ConfigError(
                f"max_size must be the most connections the store may hold (at least 1), not "
                f"{max_size!r}; pass e.g. max_size=4 or ?pool_max_size=4 in the URL"
            )
        if max_size < min_size:
            raise ConfigError(
                f"max_size ({max_size}) is smaller than min_size ({min_size}): raise max_size"
            )
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as e:
            raise ConfigError(f"invalid PostgreSQL connection string: {e}") from None
        self.dsn = dsn
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self._connect_kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = 10
        if "application_name" not in params:
            self._connect_kwargs["application_name"] = "flowstate"
        self.app_name = str(params.get("application_name") or "flowstate")
        """The ``application_name`` of this store's sessions (``pg_stat_activity``)."""
        self._timeout = float(params.get("connect_timeout") or 10)
        host = params.get("host") or params.get("hostaddr") or "localhost"
        port = params.get("port") or "5432"
        self._where = f"PostgreSQL {host}:{port}/{params.get('dbname', '')} schema {schema!r}"
        self._lock = threading.RLock()
        """Guards opening the pool and migrating (not the operations: each borrows its own
        connection)."""
        self._pool: ConnectionPool[Any] | None = None
        self._pid = os.getpid()
        self._inherited: list[Any] = []
        self._local = threading.local()
        """``conn``: the connection of the write transaction this thread is inside."""
        self._closed = False
        self._migrated = not migrate
        self.fences: dict[str, tuple[str, int]] = {}
        """run id -> (owner, epoch) this store object writes for; every write touching a
        fenced run checks, inside its transaction, that the epoch is still current."""
        self.commits = 0
        """Number of write transactions committed by this store object (for tests)."""
        self.database_id: str | None = None
        """The id in the schema's ``meta`` row, checked on every new connection."""
        self._checked: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._session: dict[str, str] = {}
        """Server settings of every session of the pool (``session_limits``)."""
        names = (
            *TABLES,
            "migrations",
            "blobs",
            "meta",
            "schedules",
            "firings",
            "events",
            *FLEET_TABLES,
            "commit_fn",
        )
        self._t = {name: sql.Identifier(schema, name) for name in names}
        self._sql_cache: dict[str, sql.SQL] = {}
        """Rendered statements: plain ``sql.SQL`` text, so an execute does not compose
        (quote the identifiers of) a ``sql.Composed`` again each time (issue 25)."""
        self.cipher = RowCipher(encryption, self._marked_encrypted)
        self._mark_pending = encryption is not None and migrate
        if min_size:
            self._ready()

    def __repr__(self) -> str:
        return f"PostgresStore({self._where})"

    # -- connections --------------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """A live connection of the pool, for diagnosis (``conn.info``): borrowed and given
        back at once, so do not run statements on it; with ``max_size=1`` it is the
        store's only connection."""
        with self._borrow() as c:
            return c

    def _ready(self) -> ConnectionPool[Any]:
        """The pool of this process, opened (and the schema migrated) on first use. A pool
        inherited through fork() is the parent's: its sockets are never used nor closed
        here (that would end the parent's sessions); a new one is opened."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid() and self._migrated:
            return pool
        with self._lock:
            if self._closed:
                raise StoreIOError(f"the checkpoint store on {self._where} is closed")
            if self._pool is not None and self._pid != os.getpid():
                self._inherited.append(self._pool)
                self._pool, self._pid = None, os.getpid()
                self._checked = weakref.WeakSet()
            if not self._migrated:
                # the first connection is a plain one: an unreachable server or a bad
                # password fails here with libpq's own message, not a pool timeout
                c = self._connect()
                try:
                    self._migrate(c)
                    self._check_identity(c)
                finally:
                    with contextlib.suppress(Exception):
                        c.close()
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.dsn,
                    kwargs=self._connect_kwargs,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    timeout=self._timeout,
                    open=False,
                    name=f"flowstate-{self.schema}",
                    num_workers=1,
                )
                self._pool.open(wait=False)
            return self._pool

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.dsn, **self._connect_kwargs)
        except psycopg.Error as e:
            raise StoreIOError(f"cannot connect to {self._where}: {e}") from e

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool for one operation (the enclosing write transaction's,
        inside ``write()`` on this thread)."""
        inner = getattr(self._local, "conn", None)
        if inner is not None:
            yield inner
            return
        pool = self._ready()
        for attempt in (1, 2):
            try:
                cm = pool.connection()
                c = cm.__enter__()
            except PoolTimeout:
                # all connections busy, or none can be made: say which
                self._connect().close()
                raise StoreIOError(
                    f"no connection of the pool to {self._where} was free within "
                    f"{self._timeout:g} s (max_size={self.max_size}): raise max_size "
                    "(?pool_max_size=N) or use fewer threads"
                ) from None
            except PoolClosed:
                raise StoreIOError(f"the checkpoint store on {self._where} is closed") from None
            if c not in self._checked:
                try:
                    self._check_identity(c)
                except BaseException as e:
                    cm.__exit__(type(e), e, e.__traceback__)
                    if isinstance(e, psycopg.Error):
                        if attempt == 1 and self._dropped(c):
                            continue  # lost while idle in the pool: take another
                        raise StoreIOError(f"cannot read the schema on {self._where}: {e}") from e
                    raise
            break
        try:
            yield c
        except BaseException as e:
            cm.__exit__(type(e), e, e.__traceback__)
            raise
        else:
            cm.__exit__(None, None, None)

    def _dropped(self, c: psycopg.Connection[Any]) -> bool:
        """Whether ``c`` was lost (server restart, terminated backend); then the idle
        connections of the pool are checked too, as they were likely lost with it."""
        if not (c.closed or c.broken):
            return False
        pool = self._pool
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.check()
        return True

    _KID_SQL = "split_part({c}, ':', 2)"
    """The key id of a sealed value ``fsenc1:<kid>:…`` in SQL (``key_ids``)."""

    def _marked_encrypted(self) -> bool:
        """Whether the ``meta`` table says this schema's payload columns are sealed."""
        try:
            rows = self._read(self._q('SELECT 1 FROM {meta} WHERE "key" = %s'), ["encryption"])
        except StoreIOError:
            return False
        return bool(rows)

    def _check_identity(self, c: psycopg.Connection[Any]) -> None:
        """On every new connection: the schema still holds the database this store first
        connected to (a schema dropped and re-created meanwhile is refused)."""
        try:
            row = c.execute(
                self._q('SELECT "value" FROM {meta} WHERE "key" = %s'), ["database_id"]
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None  # opened with migrate=False on an older schema
        got = str(row[0]) if row else None
        if self.database_id is not None and got != self.database_id:
            raise StoreIOError(
                f"the checkpoint schema on {self._where} no longer holds database "
                f"{self.database_id} (it holds {got or 'none'}): it was dropped or re-created "
                "while this process was using it; nothing was written"
            )
        self.database_id = got
        if got is not None:
            self._encryption_mark(c)
        if self._session:
            names = list(self._session)
            c.execute(
                "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in names),
                [x for n in names for x in (n, self._session[n])],
            )
        self._checked.add(c)

    def _encryption_mark(self, c: psycopg.Connection[Any]) -> None:
        """On a checked connection: mark the schema encrypted (a keyed store), or learn
        whether it is (a keyless one), so no write transaction has to ask."""
        if self._mark_pending:
            c.execute(
                self._q(
                    'INSERT INTO {meta} ("key", "value") VALUES (%s, %s) ON CONFLICT DO NOTHING'
                ),
                ["encryption", "aes-256-gcm"],
            )
            self._mark_pending = False
        if self.cipher.keyring is None and self.cipher.encrypted is None:
            row = c.execute(
                self._q('SELECT 1 FROM {meta} WHERE "key" = %s'), ["encryption"]
            ).fetchone()
            self.cipher.encrypted = row is not None

    def session_limits(
        self,
        *,
        idle_in_transaction: float | None = None,
        lock_wait: float | None = None,
        statement: float | None = None,
    ) -> None:
        """Bound what a session of this store may hold or wait, in seconds (None: no
        bound), on every connection of the pool from its next use on:

        - ``idle_in_transaction``: the server ends a session that sits inside a
          transaction this long (``idle_in_transaction_session_timeout``), so a process
          frozen (SIGSTOP, a stalled VM) in the middle of a write releases its row locks
          instead of blocking everyone who needs those rows until it wakes. Its own
          transaction is rolled back: nothing half-done is kept.
        - ``lock_wait``: a statement gives up waiting for a row lock after this long
          (``lock_timeout``); the operation fails with ``StoreIOError``.
        - ``statement``: any statement is cancelled after this long
          (``statement_timeout``).

        A fleet worker sets the first two from its lease (``Worker``), so a frozen
        worker's runs can be taken over when their leases end."""
        settings = {
            "idle_in_transaction_session_timeout": idle_in_transaction,
            "lock_timeout": lock_wait,
            "statement_timeout": statement,
        }
        for name, seconds in settings.items():
            if seconds is not None and not seconds > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {seconds!r}")
        self._session = {
            name: "0" if seconds is None else f"{max(1, round(seconds * 1000))}ms"
            for name, seconds in settings.items()
        }
        self._checked = weakref.WeakSet()  # each connection is set at its next borrow

    def _q(self, template: str) -> sql.SQL:
        """``template`` with ``{runs}``, ``{steps}`` … replaced by the schema-qualified,
        quoted table names (rendered once, cached)."""
        q = self._sql_cache.get(template)
        if q is None:
            composed = sql.SQL(template).format(**self._t)  # type: ignore[arg-type]
            q = self._sql_cache[template] = _render(composed)
        return q

    def _stmt(self, template: str) -> sql.SQL:
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

    def _migrate(self, c: psycopg.Connection[Any]) -> None:
        try:
            # the common case, an up-to-date schema: two reads, no lock, no write
            if self._applied_migrations(c) == set(MIGRATIONS):
                self._migrated = self._fast_commit = True
                return
        except psycopg.Error as e:
            raise StoreIOError(f"cannot read the checkpoint schema on {self._where}: {e}") from e
        try:
            with self._transaction(c):
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
            cause = e.__cause__
            if not isinstance(cause, psycopg.Error):
                raise
            raise StoreIOError(
                f"cannot create or migrate the checkpoint schema on {self._where}: {cause}"
            ) from cause
        self._migrated = self._fast_commit = True

    def __del__(self) -> None:
        # close the pool from the thread dropping the store: left to the pool's own
        # finaliser, it may run in one of its worker threads, which cannot join itself
        pool = getattr(self, "_pool", None)
        if pool is not None and getattr(self, "_pid", None) == os.getpid():
            with contextlib.suppress(Exception):
                pool.close(timeout=1)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            if pool is not None and self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    pool.close(timeout=5)

    # -- transactions -------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction: ``BEGIN`` … ``COMMIT`` on a connection of the pool.

        If the body raises, the transaction is rolled back, then a constraint violation
        (``psycopg.IntegrityError``) is re-raised as ``StoreError`` and any other
        ``psycopg.Error`` (lost connection, server shutdown, value PostgreSQL cannot
        store) as ``StoreIOError``, with the psycopg error as ``__cause__``. Everything
        else (flowstate's own errors, ``ValueError``, ``BaseException`` s) propagates
        unchanged. Reads and writes of this store made by the body (on this thread) join
        the transaction. A connection lost while idle in the pool is replaced before
        ``BEGIN``; a failure after that is the caller's to handle.
        """
        if getattr(self._local, "conn", None) is not None:
            yield self._local.conn  # nested: part of the enclosing transaction
            return
        crash_point("store.before_begin")
        for attempt in (1, 2):
            with self._borrow() as c:
                try:
                    c.execute("BEGIN")
                except psycopg.Error as e:
                    if attempt == 1 and self._dropped(c):
                        continue  # dropped while idle: nothing was sent, retry once
                    raise StoreIOError(
                        f"cannot start a write transaction on {self._where}: {e}"
                    ) from e
                self._local.conn = c
                try:
                    with self._transaction(c, begun=True):
                        yield c
                finally:
                    self._local.conn = None
                self.commits += 1
                crash_point("store.after_commit")
                return

    @contextlib.contextmanager
    def _transaction(
        self, c: psycopg.Connection[Any], *, begun: bool = False
    ) -> Iterator[psycopg.Connection[Any]]:
        if not begun:
            try:
                c.execute("BEGIN")
            except psycopg.Error as e:
                raise StoreIOError(f"cannot start a write transaction on {self._where}: {e}") from e
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

    def _rollback(self, c: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(Exception):
            c.execute("ROLLBACK")

    def _read(
        self, query: sql.Composed | sql.SQL, params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            with self._borrow() as c:
                try:
                    return c.execute(query, params).fetchall()
                except psycopg.Error as e:
                    inside = getattr(self._local, "conn", None) is c
                    if attempt == 1 and not inside and self._dropped(c):
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
            composed = sql.SQL("SELECT {} FROM {} WHERE ").format(
                self._columns(table), self._t[table]
            ) + sql.SQL(where.replace("?", "%s") + (f" ORDER BY {order}" if order else ""))  # type: ignore[operator]
            q = self._sql_cache[key] = _render(composed)
        return [self.cipher.open(table, self._decode(table, r)) for r in self._read(q, params)]

    def _insert(self, table: str, cols: Sequence[str], mode: str = "") -> sql.SQL:
        """INSERT of ``cols`` plus ``hash``; ``mode`` is "" (plain), "ignore" (keep the
        existing row, SQLite's INSERT OR IGNORE) or "replace" (INSERT OR REPLACE)."""
        key = f"insert:{table}:{mode}:{','.join(cols)}"
        cached = self._sql_cache.get(key)
        if cached is None:
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
            cached = self._sql_cache[key] = _render(q)
        return cached
