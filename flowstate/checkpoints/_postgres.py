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

Connections come from a pool (psycopg-pool; autocommit, explicit ``BEGIN``/``COMMIT``):
each operation borrows one, so threads of one process (the service's request handlers, a
worker's runs, heartbeats) do not wait on each other's round trips. A write transaction
holds its connection from ``BEGIN`` to ``COMMIT``; the store's reads and writes made
inside it (on the same thread) join it. A connection the server dropped (restart,
failover, ``pg_terminate_backend``) is replaced at the next operation, and the pool's idle
connections are checked with it: reads are retried once, and a write transaction is
retried only when its ``BEGIN`` failed, i.e. before anything was sent. A failure after
that is a ``StoreIOError`` and the caller decides (the engine resumes from the last
committed activation). After ``fork()`` the child opens its own pool and never touches
the parent's sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from pydantic import ValidationError

from flowstate._crashpoints import crash_point
from flowstate.clock import get_clock
from flowstate.errors import CorruptRowError, RunNotFound, StoreError, StoreIOError

from ._common import (
    ATTEMPT_COLS,
    STEP_COLS,
    WRITE_COLS,
    attempt_from_row,
    check_fence,
    check_mutable,
    duplicate_write_error,
    run_filters,
    values,
)
from ._postgres_blobs import PostgresBlobs
from ._postgres_conn import PostgresConnection
from ._postgres_maint import PostgresMaintenance
from ._postgres_notify import EVENTS_CHANNEL, PostgresNotify, channel_name
from ._postgres_schema import MIGRATIONS as MIGRATIONS
from ._postgres_schema import fleet_channel
from ._records import (
    AttemptRecord,
    EffectRecord,
    RunRecord,
    StepRecord,
    WriteRecord,
    row_hash,
)
from ._sql_events import MAX_EVENTS_PER_RUN, EventRow, SQLEvents
from ._sql_leases import SQLLeases
from ._sql_reads import SQLReads
from ._sql_timers import SQLTimers
from ._sql_writes import SQLWrites

__all__ = ["PostgresStore"]

_HEAD = ("status", "head_step", "error")
"""Run fields of the engine's step close: the run-head update ``commit_fn`` makes."""

_NO_STEP = (None,) * (len(STEP_COLS) + 1)
_NO_HEAD = (None,) * 5


_COMMIT_CALL = (
    "SELECT * FROM {commit_fn}(%s::text, %s::text, %s::bigint, "
    "%s::bigint, %s::text, %s::text, %s::bigint, %s::text, %s::text, %s::text, "
    "%s::double precision, %s::double precision, %s::text, "
    "%s::bigint, %s::text, %s::text, %s::text, %s::double precision, %s::text, "
    "%s::text, %s::bigint, %s::text, %s::double precision, %s::text)"
)
_COMMIT_FN_ARGS = (
    "(text, text, bigint, bigint, text, text, bigint, text, text, text, double precision, "
    "double precision, text, bigint, text, text, text, double precision, text, text, bigint, "
    "text, double precision, text)"
)


_APPEND_EVENTS = (
    'WITH "ins" AS (INSERT INTO {events} ("run_id", "seq", "kind", "data", "created_at") '
    "SELECT %s, * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::double precision[]) "
    'ON CONFLICT DO NOTHING RETURNING 1), "old" AS (DELETE FROM {events} '
    'WHERE "run_id" = %s AND "seq" <= %s RETURNING 1) '
    "SELECT pg_notify(%s, %s)"
)
"""An events batch: insert (a stored seq is kept), drop the run's events beyond the
newest ``MAX_EVENTS_PER_RUN``, wake ``listen("events")`` at commit."""


def _storable_error(error: Any) -> Any:
    """PostgreSQL ``text`` cannot hold NUL characters, which an exception message may
    contain; the free-form ``error`` column gets U+FFFD instead, so a failing run can
    still be recorded as failed. Every other text column is stored exactly or refused."""
    if isinstance(error, str) and "\x00" in error:
        return error.replace("\x00", "\ufffd")
    return error


class PostgresStore(
    PostgresConnection,
    PostgresBlobs,  # before SQLWrites: its _stored_effect swaps in blob references
    SQLReads,
    SQLWrites,
    SQLLeases,
    SQLTimers,
    PostgresMaintenance,
    PostgresNotify,
    SQLEvents,
):
    """Checkpoint store on a PostgreSQL schema; the contract of ``SQLiteStore``.

    ``dsn`` is a libpq connection string or ``postgresql://`` URL. ``schema`` is the
    schema holding the tables (created if missing), so several independent stores can
    share one database. ``min_size`` is how many connections are kept open (default 1:
    the constructor connects and migrates, so a bad DSN or an unreachable server fails
    here; 0 defers both to the first operation); ``max_size`` (default 4) is how many the
    pool may open for operations running at once on several threads. ``listen(channel)``
    opens a dedicated connection for ``LISTEN`` (see ``PostgresNotifier``).
    """

    # the run row is the lock (see _sql_leases)
    _LOCK_FOR_TAKEOVER = " FOR UPDATE"
    _LOCK_FOR_FENCE = " FOR NO KEY UPDATE"
    _UNIQUE = psycopg.errors.UniqueViolation

    @property
    def _channel(self) -> str:
        return fleet_channel(self.schema)

    def _insert_stmt(self, table: str, cols: Sequence[str], mode: str) -> sql.SQL:
        return self._insert(table, cols, mode)

    def _stored_error(self, error: Any) -> Any:
        return _storable_error(error)

    # -- runs ---------------------------------------------------------------------------

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
        filters = run_filters(
            status=status,
            graph=graph,
            parent_id=parent_id,
            before=None if before is None else float(before),
        )
        clauses = ["TRUE", *(f'"{col}" {op} %s' for col, op, _ in filters)]
        params: list[Any] = [v for _, _, v in filters]
        if not include_children:
            # child runs of subgraph activations have '/' in their id
            clauses.append("strpos(\"id\", '/') = 0")
        params.append(int(limit))
        return self._select(
            "runs",
            " AND ".join(clauses) + ' ORDER BY "created_at" DESC NULLS LAST, "id" LIMIT %s',
            params,
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
        hook: Callable[[Any], None] | None = None,
    ) -> None:
        """Commit an activation in one round trip: ``commit_fn`` checks the fence and
        writes the write row, the next step row and the run head in one statement, which
        PostgreSQL runs as one transaction (autocommit; ``synchronous_commit`` as the
        server has it). The shapes it does not cover (effects, a hook, several or no write
        rows, other run fields, inside an enclosing transaction) take ``SQLWrites.commit``:
        the same rows, the same hashes, the same errors."""
        if (
            len(writes) != 1
            or effects
            or hook is not None
            or (run_fields and not set(run_fields) >= set(_HEAD))
            or getattr(self._local, "conn", None) is not None
            or not self._has_commit_fn()
        ):
            super().commit(
                run_id, writes=writes, effects=effects, step=step, run_fields=run_fields, hook=hook
            )
            return
        if run_fields:
            check_mutable(run_fields)
        w = writes[0]
        wv = values(self.cipher.seal("writes", w), WRITE_COLS)
        sv = _NO_STEP if step is None else values(self.cipher.seal("steps", step), STEP_COLS)
        if run_fields:
            now = get_clock().now()
            st, hs = run_fields["status"], run_fields["head_step"]
            er = self._stored_error(run_fields["error"])
            rv: Sequence[Any] = (st, hs, er, now, row_hash(st, hs, er, now))
        else:
            rv = _NO_HEAD
        fence = self.fences.get(run_id)
        params = [run_id, *(fence or (None, None)), *wv[1:], *sv[1:], *rv]
        crash_point("store.before_begin")
        # one statement: a death from here on is the server committing it whole or
        # rolling it back whole, as at a COMMIT
        crash_point("store.before_commit")
        row = self._commit_call(run_id, w, wv[-1], params)
        if row is None or not row[3]:
            if fence is None:
                raise RunNotFound(run_id)
            check_fence(run_id, fence, row, cancelled=bool(row and row[2]))
            raise AssertionError("commit_fn refused a commit the fence allows")  # pragma: no cover
        self.commits += 1
        crash_point("store.after_commit")

    def _has_commit_fn(self) -> bool:
        fast = self._fast_commit
        if fast is None:
            # once per store object (a schema opened with migrate=False may predate m850)
            rows = self._read(
                sql.SQL("SELECT to_regprocedure(%s) IS NOT NULL"),
                [self._t["commit_fn"].as_string() + _COMMIT_FN_ARGS],
            )
            fast = self._fast_commit = bool(rows and rows[0][0])
        return fast

    def _commit_call(
        self, run_id: str, w: WriteRecord, whash: str, params: list[Any]
    ) -> tuple[Any, ...] | None:
        """Run ``commit_fn``: its row ``(owner, epoch, cancelled, applied)``, or None when
        the run is not there. A connection lost before the answer is told apart by the
        write row: there with this commit's hash, the commit landed; missing, it did not
        and is sent once more on a new connection."""
        q = self._q(_COMMIT_CALL)
        for attempt in (1, 2):
            with self._borrow() as c:
                try:
                    return c.execute(q, params, prepare=True).fetchone()
                except psycopg.errors.UniqueViolation as e:
                    raise duplicate_write_error(run_id, w) from e
                except psycopg.IntegrityError as e:
                    raise StoreError(
                        f"write refused by a constraint of the checkpoint store on "
                        f"{self._where}: {e}; nothing of this transaction was kept"
                    ) from e
                except psycopg.Error as e:
                    if not self._dropped(c):
                        raise StoreIOError(
                            f"write failed on {self._where}: {e}; the transaction was rolled back"
                        ) from e
                    lost = e
            landed = self._landed(run_id, w, whash, lost)
            if landed is not None:
                return landed
            if attempt == 2:
                break
        raise StoreIOError(
            f"commit failed on {self._where}: {lost}; the connection was lost twice and "
            "the commit did not land"
        ) from lost

    def _landed(
        self, run_id: str, w: WriteRecord, whash: str, lost: BaseException
    ) -> tuple[Any, ...] | None:
        """After a lost connection: the applied answer if this commit's write row is
        stored (same hash), None if no row is there (nothing landed: retry)."""
        try:
            rows = self._read(
                self._q(
                    'SELECT "hash" FROM {writes} '
                    'WHERE "run_id" = %s AND "step" = %s AND "task_path" = %s'
                ),
                [run_id, w.step, w.task_path],
            )
        except StoreIOError as e:
            raise StoreIOError(
                f"commit failed on {self._where}: {lost}. The connection was lost during "
                "the commit and the store cannot be read to tell whether it was applied"
            ) from e
        if not rows:
            return None
        if rows[0][0] != whash:
            raise duplicate_write_error(run_id, w) from lost
        fence = self.fences.get(run_id)
        return (*(fence or (None, None)), False, True)

    # -- events --------------------------------------------------------------------------

    def append_events(self, run_id: str, events: Sequence[EventRow]) -> None:
        """``SQLEvents.append_events`` in one statement: the batch as arrays (``unnest``),
        the trimming to ``MAX_EVENTS_PER_RUN`` and the ``NOTIFY`` of listeners together,
        one round trip and one transaction, instead of a statement per event."""
        if not events:
            return
        seqs = [int(e[0]) for e in events]
        data = [
            self.cipher.seal_value("events", "data", (run_id, seq), d) for seq, _, d, _ in events
        ]
        params = [
            run_id,
            seqs,
            [e[1] for e in events],
            data,
            [float(e[3]) for e in events],
            run_id,
            max(seqs) - MAX_EVENTS_PER_RUN,
            channel_name(self.schema, EVENTS_CHANNEL),
            run_id[:7900],
        ]
        q = self._q(_APPEND_EVENTS)
        for attempt in (1, 2):
            with self._borrow() as c:
                try:
                    c.execute(q, params, prepare=True)
                    self.commits += 1
                    return
                except psycopg.Error as e:
                    inside = getattr(self._local, "conn", None) is c
                    if attempt == 1 and not inside and self._dropped(c):
                        continue  # idempotent (a stored seq is kept): once more
                    raise StoreIOError(
                        f"write failed on {self._where}: {e}; no event of the batch was kept"
                    ) from e

    # -- effects, interrupts, attempts ---------------------------------------------------

    def effects(
        self, run_id: str, step: int | None = None, task_path: str | None = None
    ) -> list[EffectRecord]:
        where, params = '"run_id" = %s', [run_id]
        if step is not None:
            where += ' AND "step" = %s'
            params.append(step)  # type: ignore[arg-type]
        if task_path is not None:
            where += ' AND "task_path" = %s'
            params.append(task_path)
        rows = self._select("effects", where, params, '"step", "task_path", "seq"')
        # a large result is a blob of its ciphertext: opened once it is swapped back in
        return [self.cipher.open("effects", self._unblob(e)) for e in rows]

    def record_attempt(self, attempt: AttemptRecord) -> None:
        with self.write() as c:
            self._fence(c, attempt.run_id)  # a former owner stores nothing
            c.execute(
                self._q(
                    'INSERT INTO {attempts} ("run_id", "step", "task_path", "attempt", "error", '
                    '"created_at") VALUES (%s, %s, %s, %s, %s, %s) '
                    'ON CONFLICT ("run_id", "step", "task_path", "attempt") DO UPDATE SET '
                    '"error" = EXCLUDED."error", "created_at" = EXCLUDED."created_at"'
                ),
                [getattr(self.cipher.seal("attempts", attempt), c) for c in ATTEMPT_COLS],
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
                out.append(self.cipher.open("attempts", attempt_from_row(r)))
            except ValidationError as e:
                step = r[1] if isinstance(r[1], int) else None
                raise CorruptRowError("attempts", str(r[0]), step, f"invalid row: {e}") from None
        return out

    # -- maintenance -----------------------------------------------------------------------

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
            # a fleet worker holding the run hears it at once (delivered at COMMIT)
            c.execute("SELECT pg_notify(%s, %s)", [self._channel, f"signal:{kind}:{run_id}"])
