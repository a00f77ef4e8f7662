"""The Postgres checkpoint store: ``SQLiteStore``'s contract on a PostgreSQL schema.

Same public methods, same rows, same hashes, same errors, so the engine and the
contract tests cannot tell the two apart (DESIGN.md "Storage"; RELIABILITY.md G1, G4, G7):

- Payload columns are ``text`` holding the JSON exactly as given (not ``jsonb``, which
  would re-serialise it and break the per-row hash over the exact text). Every row keeps
  the ``hash`` (and for runs ``mhash``) of ``row_hash``, checked on every read before the
  row is validated strictly into its record model; a mismatch is a ``CorruptRowError``
  naming table, run and step.
- One transaction per write operation: a ``commit`` lands the activation's write row, its
  journaled effects, the next step row and the run-head advance together or not at all
  (G1). Primary keys give at most one row per ``(run, step, task_path)`` and per
  ``(activation, seq)`` (G4); a second commit of an activation is a ``StoreError``.
- SQL is parameterised throughout. Identifiers (the schema, the mutable run columns) are
  checked against an allow-list and quoted with ``psycopg.sql.Identifier``.
- The schema is created by versioned migrations recorded in ``<schema>.migrations``,
  applied in one transaction under a transaction-level advisory lock keyed on the schema
  name, so processes opening a fresh schema at the same moment do not race.
- Key and ordering columns use ``COLLATE "C"`` (byte order, like SQLite's BINARY), so
  ``list_runs`` and the other ordered reads return the same order on both backends.
- One writer per run, as in ``SQLiteStore``: ``runs.owner/epoch/lease_until`` (migration
  ``m002_leases``), ``acquire`` / ``heartbeat`` / ``release`` / ``lease``, and a fence
  check of ``self.fences`` inside the transaction of every ``commit``,
  ``record_effect``, ``record_interrupt`` and run update. Where SQLite serialises on its
  single write lock, Postgres serialises on the run row (``FOR UPDATE``).

One connection per store object (autocommit, explicit ``BEGIN``/``COMMIT``), serialised
by an ``RLock`` like ``SQLiteStore``'s. A connection that the server dropped (restart,
failover, idle timeout) is replaced at the next operation: reads are retried once, and a
write transaction is retried only when its ``BEGIN`` failed, i.e. before anything was sent.
A failure after that is a ``StoreIOError`` and the caller decides (the engine resumes from
the last committed activation).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError

from flowstate._crashpoints import crash_point
from flowstate.errors import (
    CorruptRowError,
    LeaseLost,
    RunNotFound,
    RunOwned,
    RunStateError,
    StoreError,
    StoreIOError,
)

from ._records import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    StepRecord,
    WriteRecord,
    row_hash,
)

__all__ = ["PostgresStore"]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""Schema names the store accepts: a plain SQL identifier of at most 63 bytes."""

_TABLES = ("runs", "steps", "writes", "effects", "interrupts", "attempts", "signals")

# -- migrations ----------------------------------------------------------------------------
# Each migration is a name and its statements; ``{runs}`` etc. are the schema-qualified
# table names. Applied migrations are recorded in ``<schema>.migrations``; never edit or
# reorder a released migration, append a new one.

_MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "m001_initial",
        (
            """CREATE TABLE {runs} (
                "id" text COLLATE "C" PRIMARY KEY,
                "graph" text NOT NULL,
                "fingerprint" text NOT NULL,
                "graph_doc" text,
                "status" text NOT NULL,
                "input" text NOT NULL,
                "head_step" bigint NOT NULL,
                "error" text,
                "parent_id" text COLLATE "C",
                "parent_step" bigint,
                "config" text,
                "created_at" double precision,
                "updated_at" double precision,
                "hash" text NOT NULL,
                "mhash" text
            )""",
            # no index on updated_at: it changes on every commit (as in SQLiteStore)
            'CREATE INDEX "runs_created_at" ON {runs} ("created_at")',
            'CREATE INDEX "runs_parent_id" ON {runs} ("parent_id")',
            """CREATE TABLE {steps} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "tasks" text NOT NULL,
                "joins" text,
                "snapshot" text,
                "created_at" double precision,
                "hash" text NOT NULL,
                PRIMARY KEY ("run_id", "step")
            )""",
            """CREATE TABLE {writes} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "task_path" text COLLATE "C" NOT NULL,
                "node" text NOT NULL,
                "seq" bigint NOT NULL,
                "update" text NOT NULL,
                "goto" text,
                "usage" text,
                "started_at" double precision,
                "finished_at" double precision,
                "hash" text NOT NULL,
                PRIMARY KEY ("run_id", "step", "task_path")
            )""",
            """CREATE TABLE {effects} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "task_path" text COLLATE "C" NOT NULL,
                "seq" bigint NOT NULL,
                "name" text NOT NULL,
                "request" text NOT NULL,
                "response" text NOT NULL,
                "created_at" double precision,
                "hash" text NOT NULL,
                PRIMARY KEY ("run_id", "step", "task_path", "seq")
            )""",
            """CREATE TABLE {interrupts} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "task_path" text COLLATE "C" NOT NULL,
                "seq" bigint NOT NULL,
                "payload" text NOT NULL,
                "answer" text,
                "created_at" double precision,
                "hash" text NOT NULL,
                PRIMARY KEY ("run_id", "step", "task_path", "seq")
            )""",
            """CREATE TABLE {attempts} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "task_path" text COLLATE "C" NOT NULL,
                "attempt" bigint NOT NULL,
                "error" text,
                "created_at" double precision,
                PRIMARY KEY ("run_id", "step", "task_path", "attempt")
            )""",
            """CREATE TABLE {signals} (
                "run_id" text COLLATE "C" NOT NULL,
                "kind" text COLLATE "C" NOT NULL,
                "created_at" double precision,
                PRIMARY KEY ("run_id", "kind")
            )""",
        ),
    ),
    (
        # one writer per run: the owner, its fencing epoch and its lease expiry (the
        # columns of SQLiteStore's m002_leases)
        "m002_leases",
        (
            'ALTER TABLE {runs} ADD COLUMN "owner" text, '
            'ADD COLUMN "epoch" bigint NOT NULL DEFAULT 0, '
            'ADD COLUMN "lease_until" double precision',
        ),
    ),
    (
        # mirrors SQLiteStore's m003_blobs so both stores have the same tables; this store
        # keeps effect results inline (Postgres TOAST already compresses large values)
        "m003_blobs",
        ('CREATE TABLE {blobs} ("hash" text COLLATE "C" PRIMARY KEY, "data" text NOT NULL)',),
    ),
)

MIGRATIONS: tuple[str, ...] = tuple(name for name, _ in _MIGRATIONS)
"""Names of the migrations this version applies, in order."""

# -- columns and hashes (the same as SQLiteStore's) ----------------------------------------

_RUN_COLS = tuple(RunRecord.model_fields)
_MUTABLE = ("status", "head_step", "error", "updated_at")
_RUN_IMMUTABLE = tuple(c for c in _RUN_COLS if c not in _MUTABLE)
_STEP_COLS = tuple(StepRecord.model_fields)
_WRITE_COLS = tuple(WriteRecord.model_fields)
_EFFECT_COLS = tuple(EffectRecord.model_fields)
_INTERRUPT_COLS = tuple(InterruptRecord.model_fields)
_ATTEMPT_COLS = tuple(AttemptRecord.model_fields)
_TABLE_MODELS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    "runs": (RunRecord, _RUN_COLS),
    "steps": (StepRecord, _STEP_COLS),
    "writes": (WriteRecord, _WRITE_COLS),
    "effects": (EffectRecord, _EFFECT_COLS),
    "interrupts": (InterruptRecord, _INTERRUPT_COLS),
}
_KEYS = {
    "steps": ("run_id", "step"),
    "interrupts": ("run_id", "step", "task_path", "seq"),
}
"""Primary keys of the tables written with replace semantics (SQLite's INSERT OR REPLACE)."""


def _run_values(run: RunRecord) -> list[Any]:
    vals = [getattr(run, c) for c in _RUN_COLS]
    return [
        *vals,
        row_hash(*(getattr(run, c) for c in _RUN_IMMUTABLE)),
        row_hash(*(getattr(run, c) for c in _MUTABLE)),
    ]


def _values(record: Any, cols: Sequence[str]) -> list[Any]:
    vals = [getattr(record, c) for c in cols]
    vals.append(row_hash(*vals))
    return vals


def _check_mutable(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(_MUTABLE)
    if unknown:
        raise ValueError(
            f"run fields {sorted(unknown)} cannot change after creation; only "
            f"{', '.join(_MUTABLE)} can"
        )


def _storable_error(error: Any) -> Any:
    """PostgreSQL ``text`` cannot hold NUL characters, which an exception message may
    contain; the free-form ``error`` column gets U+FFFD instead, so a failing run can
    still be recorded as failed. Every other text column is stored exactly or refused."""
    if isinstance(error, str) and "\x00" in error:
        return error.replace("\x00", "\ufffd")
    return error


def _ids(*names: str) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


class PostgresStore:
    """Checkpoint store on a PostgreSQL schema; the contract of ``SQLiteStore``.

    ``dsn`` is a libpq connection string or ``postgresql://`` URL. ``schema`` is the
    schema holding the tables (created if missing), so several independent stores can
    share one database. ``min_size`` is how many connections are opened up front: 1
    (default) connects and migrates in the constructor, so a bad DSN or an unreachable
    server fails here; 0 defers both to the first operation. The store uses one
    connection, serialised by a lock, whatever the number of threads; for more
    parallelism open more store objects (one per process or worker).
    """

    def __init__(
        self, dsn: str, *, schema: str = "flowstate", min_size: int = 1, migrate: bool = True
    ) -> None:
        """``migrate=False`` skips the migrations (as in ``SQLiteStore``): the schema is used
        as it is, for diagnosis (``flowstate doctor``) or with a role that may not create
        tables; ``integrity_check`` and ``table_sizes`` report what is there."""
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(
                f"schema must be a plain SQL identifier (letters, digits and '_', not "
                f"starting with a digit, at most 63 characters), not {schema!r}"
            )
        if schema.lower().startswith("pg_"):
            raise ValueError(f"schema {schema!r}: the prefix 'pg_' is reserved by PostgreSQL")
        if min_size not in (0, 1):
            raise ValueError(
                f"min_size must be 0 (connect on first use) or 1 (connect now), not "
                f"{min_size!r}: a PostgresStore holds one connection; open one store per "
                "worker for more parallelism"
            )
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as e:
            raise ValueError(f"invalid PostgreSQL connection string: {e}") from None
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
        self._t = {name: sql.Identifier(schema, name) for name in (*_TABLES, "migrations", "blobs")}
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
        return c

    def _q(self, template: str) -> sql.Composed:
        """``template`` with ``{runs}``, ``{steps}`` … replaced by the schema-qualified,
        quoted table names (cached)."""
        q = self._sql_cache.get(template)
        if q is None:
            q = self._sql_cache[template] = sql.SQL(template).format(**self._t)  # type: ignore[arg-type]
        return q

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

    def _read(self, query: sql.Composable, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
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
        model, cols = _TABLE_MODELS[table]
        if table == "runs":
            d = dict(zip(cols, row[: len(cols)], strict=True))
            rid = str(d.get("id"))
            if (
                row_hash(*(d[c] for c in _RUN_IMMUTABLE)) != row[len(cols)]
                or row_hash(*(d[c] for c in _MUTABLE)) != row[len(cols) + 1]
            ):
                raise CorruptRowError("runs", rid, None, "integrity hash mismatch")
            try:
                return model.model_validate(d)
            except ValidationError as e:
                raise CorruptRowError("runs", rid, None, f"invalid row: {e}") from None
        vals, stored_hash = list(row[: len(cols)]), row[len(cols)]
        run_id = str(vals[0]) if vals else "?"
        step = vals[1] if len(vals) > 1 and isinstance(vals[1], int) else None
        if row_hash(*vals) != stored_hash:
            raise CorruptRowError(table, run_id, step, "integrity hash mismatch")
        try:
            return model.model_validate(dict(zip(cols, vals, strict=True)))
        except ValidationError as e:
            raise CorruptRowError(table, run_id, step, f"invalid row: {e}") from None

    def _columns(self, table: str) -> sql.Composed:
        _, cols = _TABLE_MODELS[table]
        extra = ("hash", "mhash") if table == "runs" else ("hash",)
        return _ids(*cols, *extra)

    def _select(self, table: str, where: str, params: Sequence[Any], order: str = "") -> list[Any]:
        """Rows of ``table`` matching ``where`` (SQL text of this module, never input),
        decoded and verified."""
        key = f"select:{table}:{where}:{order}"
        q = self._sql_cache.get(key)
        if q is None:
            q = sql.SQL("SELECT {} FROM {} WHERE ").format(
                self._columns(table), self._t[table]
            ) + sql.SQL(where + (f" ORDER BY {order}" if order else ""))  # type: ignore[operator]
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
                self._t[table], _ids(*names), sql.SQL(", ").join(sql.Placeholder() * len(names))
            )
            if mode == "ignore":
                q += sql.SQL(" ON CONFLICT DO NOTHING")
            elif mode == "replace":
                keys = _KEYS[table]
                q += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                    _ids(*keys),
                    sql.SQL(", ").join(
                        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                        for n in names
                        if n not in keys
                    ),
                )
            self._sql_cache[key] = q
        return q

    # -- runs ---------------------------------------------------------------------------

    def create_run(
        self,
        run: RunRecord,
        first_step: StepRecord,
        *,
        owner: str | None = None,
        ttl: float = 0.0,
    ) -> None:
        """Create a run and its first step; with ``owner``, also take its lease (epoch 1)."""
        with self.write() as c:
            try:
                c.execute(
                    self._q("INSERT INTO {runs} (")
                    + _ids(*_RUN_COLS, "hash", "mhash")
                    + sql.SQL(") VALUES (")
                    + sql.SQL(", ").join(sql.Placeholder() * (len(_RUN_COLS) + 2))
                    + sql.SQL(")"),
                    _run_values(run),
                )
            except psycopg.errors.UniqueViolation:
                raise RunStateError(
                    f"a run with id '{run.id}' already exists: resume it "
                    f"(`flowstate resume {run.id}`) or choose another run id"
                ) from None
            c.execute(self._insert("steps", _STEP_COLS), _values(first_step, _STEP_COLS))
            if owner is not None:
                c.execute(
                    self._q(
                        'UPDATE {runs} SET "owner" = %s, "epoch" = 1, "lease_until" = %s '
                        'WHERE "id" = %s'
                    ),
                    [owner, time.time() + ttl, run.id],
                )
        if owner is not None:
            self.fences[run.id] = (owner, 1)

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._select("runs", '"id" = %s', [run_id])
        if not rows:
            raise RunNotFound(run_id)
        return rows[0]  # type: ignore[no-any-return]

    def find_run(self, run_id: str) -> RunRecord | None:
        rows = self._select("runs", '"id" = %s', [run_id])
        return rows[0] if rows else None

    def list_runs(
        self,
        *,
        status: str | None = None,
        graph: str | None = None,
        parent_id: str | None = None,
        include_children: bool = False,
        limit: int = 100,
        before: float | None = None,
    ) -> list[RunRecord]:
        clauses, params = ["TRUE"], []  # type: ignore[var-annotated]
        if status is not None:
            clauses.append('"status" = %s')
            params.append(status)
        if graph is not None:
            clauses.append('"graph" = %s')
            params.append(graph)
        if parent_id is not None:
            clauses.append('"parent_id" = %s')
            params.append(parent_id)
        if not include_children:
            # child runs of subgraph activations have '/' in their id
            clauses.append("strpos(\"id\", '/') = 0")
        if before is not None:
            clauses.append('"created_at" < %s')
            params.append(float(before))
        params.append(int(limit))
        return self._select(
            "runs",
            " AND ".join(clauses) + ' ORDER BY "created_at" DESC NULLS LAST, "id" LIMIT %s',
            params,
        )

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change a run's status, head step or error (the only mutable columns)."""
        with self.write() as c:
            self._update_run(c, run_id, fields)
        return self.get_run(run_id)

    def _update_run(self, c: psycopg.Connection[Any], run_id: str, fields: dict[str, Any]) -> None:
        _check_mutable(fields)
        self._fence(c, run_id)
        # updated_at is always the time of this update (as in SQLiteStore)
        fields = {k: v for k, v in fields.items() if k != "updated_at"}
        if "error" in fields:
            fields["error"] = _storable_error(fields["error"])
        sets = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in fields]
        sets.append(sql.SQL('"updated_at" = %s'))
        row = c.execute(
            sql.SQL(
                'UPDATE {} SET {} WHERE "id" = %s '
                'RETURNING "status", "head_step", "error", "updated_at"'
            ).format(self._t["runs"], sql.SQL(", ").join(sets)),
            [*fields.values(), time.time(), run_id],
        ).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        c.execute(
            self._q('UPDATE {runs} SET "mhash" = %s WHERE "id" = %s'), [row_hash(*row), run_id]
        )

    # -- steps and writes -----------------------------------------------------------------

    def commit(
        self,
        run_id: str,
        *,
        writes: Sequence[WriteRecord] = (),
        effects: Sequence[EffectRecord] = (),
        step: StepRecord | None = None,
        run_fields: dict[str, Any] | None = None,
    ) -> None:
        """Commit an activation (or a step boundary) in one transaction (G1).

        The write row, the effects journaled with it, the next step row and the run's
        head advance all land together or not at all.
        """
        if run_fields:
            _check_mutable(run_fields)
        with self.write() as c:
            self._fence(c, run_id)
            for w in writes:
                try:
                    c.execute(self._insert("writes", _WRITE_COLS), _values(w, _WRITE_COLS))
                except psycopg.errors.UniqueViolation as e:
                    raise StoreError(
                        f"activation '{w.task_path}' of run {run_id} at step {w.step} is "
                        "already committed (table 'writes'), so this commit of it was refused "
                        "and nothing of it was stored. Only one process may execute a run at a "
                        f"time: check `flowstate runs` for another worker running {run_id}"
                    ) from e
            for e in effects:
                c.execute(self._insert("effects", _EFFECT_COLS, "ignore"), _values(e, _EFFECT_COLS))
            if step is not None:
                c.execute(self._insert("steps", _STEP_COLS, "replace"), _values(step, _STEP_COLS))
            if run_fields:
                if set(run_fields) >= {"status", "head_step", "error"}:
                    now = time.time()
                    st, hs = run_fields["status"], run_fields["head_step"]
                    er = _storable_error(run_fields["error"])
                    cur = c.execute(
                        self._q(
                            'UPDATE {runs} SET "status" = %s, "head_step" = %s, '
                            '"error" = %s, "updated_at" = %s, "mhash" = %s WHERE "id" = %s'
                        ),
                        [st, hs, er, now, row_hash(st, hs, er, now), run_id],
                    )
                    if cur.rowcount != 1:
                        raise RunNotFound(run_id)
                else:
                    self._update_run(c, run_id, run_fields)

    def get_step(self, run_id: str, step: int) -> StepRecord | None:
        rows = self._select("steps", '"run_id" = %s AND "step" = %s', [run_id, step])
        return rows[0] if rows else None

    def latest_step(self, run_id: str) -> StepRecord | None:
        rows = self._select("steps", '"run_id" = %s ORDER BY "step" DESC LIMIT 1', [run_id])
        return rows[0] if rows else None

    def last_snapshot(self, run_id: str, at_or_before: int) -> StepRecord | None:
        rows = self._select(
            "steps",
            '"run_id" = %s AND "step" <= %s AND "snapshot" IS NOT NULL '
            'ORDER BY "step" DESC LIMIT 1',
            [run_id, at_or_before],
        )
        return rows[0] if rows else None

    def steps(self, run_id: str, start: int = 0, stop: int | None = None) -> list[StepRecord]:
        hi = stop if stop is not None else 2**62
        return self._select(
            "steps",
            '"run_id" = %s AND "step" >= %s AND "step" < %s',
            [run_id, start, hi],
            '"step"',
        )

    def writes(self, run_id: str, start: int = 0, stop: int | None = None) -> list[WriteRecord]:
        hi = stop if stop is not None else 2**62
        return self._select(
            "writes",
            '"run_id" = %s AND "step" >= %s AND "step" < %s',
            [run_id, start, hi],
            '"step", "seq", "task_path"',
        )

    # -- effects, interrupts, attempts ---------------------------------------------------

    def record_effect(self, effect: EffectRecord, *, replace: bool = False) -> None:
        with self.write() as c:
            self._fence(c, effect.run_id)
            c.execute(
                self._insert("effects", _EFFECT_COLS, "replace" if replace else "ignore"),
                _values(effect, _EFFECT_COLS),
            )

    def effects(
        self, run_id: str, step: int | None = None, task_path: str | None = None
    ) -> list[EffectRecord]:
        where, params = '"run_id" = %s', [run_id]  # type: ignore[list-item]
        if step is not None:
            where += ' AND "step" = %s'
            params.append(step)  # type: ignore[arg-type]
        if task_path is not None:
            where += ' AND "task_path" = %s'
            params.append(task_path)
        return self._select("effects", where, params, '"step", "task_path", "seq"')

    def record_interrupt(self, intr: InterruptRecord, run_fields: dict[str, Any]) -> None:
        with self.write() as c:
            self._fence(c, intr.run_id)
            c.execute(
                self._insert("interrupts", _INTERRUPT_COLS, "replace"),
                _values(intr, _INTERRUPT_COLS),
            )
            self._update_run(c, intr.run_id, run_fields)

    def interrupts(self, run_id: str, step: int | None = None) -> list[InterruptRecord]:
        if step is None:
            return self._select(
                "interrupts", '"run_id" = %s', [run_id], '"step", "task_path", "seq"'
            )
        return self._select(
            "interrupts", '"run_id" = %s AND "step" = %s', [run_id, step], '"task_path", "seq"'
        )

    def answer_interrupt(self, intr: InterruptRecord, answer: str) -> None:
        new = intr.model_copy(update={"answer": answer})
        with self.write() as c:
            c.execute(
                self._insert("interrupts", _INTERRUPT_COLS, "replace"),
                _values(new, _INTERRUPT_COLS),
            )

    def record_attempt(self, attempt: AttemptRecord) -> None:
        with self.write() as c:
            c.execute(
                self._q(
                    'INSERT INTO {attempts} ("run_id", "step", "task_path", "attempt", "error", '
                    '"created_at") VALUES (%s, %s, %s, %s, %s, %s) '
                    'ON CONFLICT ("run_id", "step", "task_path", "attempt") DO UPDATE SET '
                    '"error" = EXCLUDED."error", "created_at" = EXCLUDED."created_at"'
                ),
                [getattr(attempt, c) for c in _ATTEMPT_COLS],
            )

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        rows = self._read(
            self._q(
                'SELECT "run_id", "step", "task_path", "attempt", "error", "created_at" '
                'FROM {attempts} WHERE "run_id" = %s ORDER BY "step", "task_path", "attempt"'
            ),
            [run_id],
        )
        out = []
        for r in rows:
            try:
                out.append(AttemptRecord.model_validate(dict(zip(_ATTEMPT_COLS, r, strict=True))))
            except ValidationError as e:
                step = r[1] if isinstance(r[1], int) else None
                raise CorruptRowError("attempts", str(r[0]), step, f"invalid row: {e}") from None
        return out

    # -- maintenance -----------------------------------------------------------------------

    def integrity_check(self) -> str:
        """``"ok"``, the problems found joined by ``"; "``, or ``"error: <message>"`` when
        the check cannot run (server unreachable, schema missing).

        PostgreSQL checks its own pages (enable ``initdb --data-checksums``); this checks
        what is flowstate's: every migration is applied, and every row of every table
        passes its integrity hash and validates into its record. It reads every row.
        """
        problems: list[str] = []
        limit = 50
        with self._lock:
            try:
                c = self._connection()
                done = {str(r[0]) for r in c.execute(self._q('SELECT "name" FROM {migrations}'))}
                missing = [m for m in MIGRATIONS if m not in done]
                unknown = sorted(done - set(MIGRATIONS))
                if missing:
                    problems.append(f"migrations not applied: {', '.join(missing)}")
                if unknown:
                    problems.append(f"unknown migrations: {', '.join(unknown)}")
                for table in _TABLE_MODELS:
                    q = sql.SQL("SELECT {} FROM {}").format(self._columns(table), self._t[table])
                    with c.cursor() as cur:
                        for row in cur.stream(q):
                            if len(problems) >= limit:
                                continue  # drain the stream; the report is full
                            try:
                                self._decode(table, row)
                            except CorruptRowError as e:
                                problems.append(e.message)
                problems.extend(p for p in self._attempt_problems(c) if len(problems) < limit)
            except (psycopg.Error, StoreIOError) as e:
                return f"error: {e}"
        return "; ".join(problems) if problems else "ok"

    def _attempt_problems(self, c: psycopg.Connection[Any]) -> list[str]:
        out = []
        q = self._q(
            'SELECT "run_id", "step", "task_path", "attempt", "error", "created_at" FROM {attempts}'
        )
        with c.cursor() as cur:
            for r in cur.stream(q):
                try:
                    AttemptRecord.model_validate(dict(zip(_ATTEMPT_COLS, r, strict=True)))
                except ValidationError as e:
                    out.append(f"invalid row in table 'attempts' for run {r[0]}: {e}")
        return out

    def table_sizes(self) -> dict[str, int]:
        """Row count of every table in the store's schema (migrations bookkeeping
        included)."""
        names = [
            str(r[0])
            for r in self._read(
                "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = %s "
                'ORDER BY tablename COLLATE "C"',
                [self.schema],
            )
        ]
        sizes: dict[str, int] = {}
        for name in names:
            q = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.schema, name))
            sizes[name] = int(self._read(q)[0][0])
        return sizes

    def largest_runs(self, limit: int = 10) -> list[tuple[str, int]]:
        """The ``limit`` runs with the most payload bytes, largest first, as
        ``(run id, bytes)``: the JSON of their writes (update, goto, usage), steps
        (tasks, joins, snapshot) and effects (request, response). Child runs of
        subgraph activations count on their own."""
        rows = self._read(
            self._q(
                """
                SELECT "run_id", sum(n) AS total FROM (
                    SELECT "run_id", coalesce(octet_length("update"), 0)
                        + coalesce(octet_length("goto"), 0)
                        + coalesce(octet_length("usage"), 0) AS n FROM {writes}
                    UNION ALL
                    SELECT "run_id", coalesce(octet_length("tasks"), 0)
                        + coalesce(octet_length("joins"), 0)
                        + coalesce(octet_length("snapshot"), 0) FROM {steps}
                    UNION ALL
                    SELECT "run_id", coalesce(octet_length("request"), 0)
                        + coalesce(octet_length("response"), 0) FROM {effects}
                ) AS payloads
                GROUP BY "run_id" ORDER BY total DESC, "run_id" LIMIT %s
                """
            ),
            [int(limit)],
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    def child_run_ids(self, run_id: str) -> list[str]:
        """Ids of the direct child runs of ``run_id``'s subgraph activations, i.e. the
        runs with id ``run_id/<step>/<task_path>``, in id order.

        Only ids are read: a damaged row of some other run (a fork, a grandchild) cannot
        make this fail, unlike ``list_runs(parent_id=...)`` which decodes every row.
        """
        prefix = run_id + "/"
        rows = self._read(
            self._q(
                'SELECT "id" FROM {runs} WHERE "id" >= %s AND "id" < %s '
                'AND left("id", length(%s::text) + 1) = %s::text || \'/\' ORDER BY "id"'
            ),
            [prefix, run_id + chr(ord("/") + 1), run_id, run_id],
        )
        out = []
        for r in rows:
            rid = r[0]
            if not isinstance(rid, str):
                continue
            step, sep, task = rid[len(prefix) :].partition("/")
            if sep and task and "/" not in task and step.isascii() and step.isdigit():
                out.append(rid)
        return out

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything hanging off it, child runs included.

        A child run's id is its parent's id, ``/`` and more: matched by exact prefix
        comparison (no ``LIKE``, so no wildcard, escape or case folding). The byte range
        ``[run_id/, run_id0)`` (``'0'`` follows ``'/'``; the id columns are ``COLLATE
        "C"``) holds exactly those ids and lets the primary-key indexes serve the scan.
        """
        lo, hi = run_id + "/", run_id + chr(ord("/") + 1)
        with self.write() as c:
            for table, col in (
                ("writes", "run_id"),
                ("steps", "run_id"),
                ("effects", "run_id"),
                ("interrupts", "run_id"),
                ("attempts", "run_id"),
                ("signals", "run_id"),
                ("runs", "id"),
            ):
                c.execute(
                    sql.SQL(
                        "DELETE FROM {t} WHERE {c} = %s OR ({c} >= %s AND {c} < %s "
                        "AND left({c}, length(%s::text) + 1) = %s::text || '/')"
                    ).format(t=self._t[table], c=sql.Identifier(col)),
                    [run_id, lo, hi, run_id, run_id],
                )

    # -- signals: pause and cancel requests from other processes ------------------------

    def send_signal(self, run_id: str, kind: str) -> None:
        with self.write() as c:
            c.execute(
                self._q(
                    'INSERT INTO {signals} ("run_id", "kind", "created_at") VALUES (%s, %s, %s) '
                    'ON CONFLICT ("run_id", "kind") DO UPDATE SET '
                    '"created_at" = EXCLUDED."created_at"'
                ),
                [run_id, kind, time.time()],
            )

    def signals(self, run_id: str) -> set[str]:
        return {
            str(r[0])
            for r in self._read(
                self._q('SELECT "kind" FROM {signals} WHERE "run_id" = %s'), [run_id]
            )
        }

    def clear_signals(self, run_id: str) -> None:
        with self.write() as c:
            c.execute(self._q('DELETE FROM {signals} WHERE "run_id" = %s'), [run_id])

    def visit_counts(self, run_id: str) -> dict[str, int]:
        rows = self._read(
            self._q('SELECT "node", count(*) FROM {writes} WHERE "run_id" = %s GROUP BY "node"'),
            [run_id],
        )
        return {str(r[0]): int(r[1]) for r in rows}

    # -- one writer per run: leases and fencing ---------------------------------------------
    # The run row is the lock: ``acquire`` takes it ``FOR UPDATE`` and a fenced write takes
    # it ``FOR NO KEY UPDATE`` (the lock its own UPDATE of the run would take), so a
    # takeover and a stale owner's commit are serialised on the row, and a commit that
    # passed its fence check lands before the takeover that would have refused it.

    def _fence(self, c: psycopg.Connection[Any], run_id: str) -> None:
        fence = self.fences.get(run_id)
        if fence is None:
            return
        row = c.execute(
            self._q('SELECT "owner", "epoch" FROM {runs} WHERE "id" = %s FOR NO KEY UPDATE'),
            [run_id],
        ).fetchone()
        if row is None or (row[0], row[1]) != fence:
            now_owner = f"now held by {row[0]} at epoch {row[1]}" if row else "run deleted"
            raise LeaseLost(run_id, fence[1], now_owner)

    def acquire(self, run_id: str, owner: str, ttl: float, alive: Any = None) -> int:
        """Take the run's lease for ``owner`` (refused while another live owner holds an
        unexpired one) and return the new fencing epoch. ``alive(owner) -> bool|None`` lets
        the caller declare a holder dead before its lease expires (e.g. a dead local pid)."""
        with self.write() as c:
            row = c.execute(
                self._q(
                    'SELECT "owner", "epoch", "lease_until" FROM {runs} WHERE "id" = %s FOR UPDATE'
                ),
                [run_id],
            ).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            holder, epoch, until = row
            now = time.time()
            if holder and holder != owner and until is not None and until > now:
                if alive is None or alive(holder) is not False:
                    raise RunOwned(run_id, holder, until)
            epoch = int(epoch or 0) + 1
            c.execute(
                self._q(
                    'UPDATE {runs} SET "owner" = %s, "epoch" = %s, "lease_until" = %s '
                    'WHERE "id" = %s'
                ),
                [owner, epoch, now + ttl, run_id],
            )
        self.fences[run_id] = (owner, epoch)
        return epoch

    def heartbeat(self, run_id: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when it was taken over (the caller must stop)."""
        with self.write() as c:
            cur = c.execute(
                self._q(
                    'UPDATE {runs} SET "lease_until" = %s '
                    'WHERE "id" = %s AND "owner" = %s AND "epoch" = %s'
                ),
                [time.time() + ttl, run_id, owner, epoch],
            )
            return cur.rowcount == 1

    def release(self, run_id: str, owner: str, epoch: int) -> None:
        """Give the lease up (only if still held by this owner and epoch)."""
        self.fences.pop(run_id, None)
        with self.write() as c:
            c.execute(
                self._q(
                    'UPDATE {runs} SET "owner" = NULL, "lease_until" = NULL '
                    'WHERE "id" = %s AND "owner" = %s AND "epoch" = %s'
                ),
                [run_id, owner, epoch],
            )

    def lease(self, run_id: str) -> tuple[str | None, int, float | None]:
        """(owner, epoch, lease_until) of a run."""
        rows = self._read(
            self._q('SELECT "owner", "epoch", "lease_until" FROM {runs} WHERE "id" = %s'),
            [run_id],
        )
        if not rows:
            raise RunNotFound(run_id)
        r = rows[0]
        return (r[0], int(r[1] or 0), r[2])
