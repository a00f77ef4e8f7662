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
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from pydantic import ValidationError

from flowstate.errors import CorruptRowError

from ._common import (
    ATTEMPT_COLS,
    attempt_from_row,
    run_filters,
)
from ._postgres_blobs import PostgresBlobs
from ._postgres_conn import PostgresConnection
from ._postgres_maint import PostgresMaintenance
from ._postgres_notify import PostgresNotify
from ._postgres_schema import MIGRATIONS as MIGRATIONS
from ._postgres_schema import fleet_channel
from ._records import (
    AttemptRecord,
    EffectRecord,
    RunRecord,
)
from ._sql_events import SQLEvents
from ._sql_leases import SQLLeases
from ._sql_reads import SQLReads
from ._sql_timers import SQLTimers
from ._sql_writes import SQLWrites

__all__ = ["PostgresStore"]


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

    def _insert_stmt(self, table: str, cols: Sequence[str], mode: str) -> sql.Composed:
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
