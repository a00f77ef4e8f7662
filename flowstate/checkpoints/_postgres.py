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

import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from pydantic import ValidationError

from flowstate.errors import CorruptRowError, RunNotFound

from ._common import (
    ATTEMPT_COLS,
    EFFECT_COLS,
    INTERRUPT_COLS,
    RUN_COLS,
    STEP_COLS,
    WRITE_COLS,
    attempt_from_row,
    check_mutable,
    duplicate_write_error,
    run_exists_error,
    run_filters,
    run_values,
    values,
)
from ._postgres_conn import PostgresConnection, ids
from ._postgres_maint import PostgresMaintenance
from ._postgres_schema import MIGRATIONS as MIGRATIONS
from ._records import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    StepRecord,
    WriteRecord,
    row_hash,
)
from ._sql_leases import SQLLeases
from ._sql_reads import SQLReads

__all__ = ["PostgresStore"]


def _storable_error(error: Any) -> Any:
    """PostgreSQL ``text`` cannot hold NUL characters, which an exception message may
    contain; the free-form ``error`` column gets U+FFFD instead, so a failing run can
    still be recorded as failed. Every other text column is stored exactly or refused."""
    if isinstance(error, str) and "\x00" in error:
        return error.replace("\x00", "\ufffd")
    return error


class PostgresStore(PostgresConnection, SQLReads, SQLLeases, PostgresMaintenance):
    """Checkpoint store on a PostgreSQL schema; the contract of ``SQLiteStore``.

    ``dsn`` is a libpq connection string or ``postgresql://`` URL. ``schema`` is the
    schema holding the tables (created if missing), so several independent stores can
    share one database. ``min_size`` is how many connections are opened up front: 1
    (default) connects and migrates in the constructor, so a bad DSN or an unreachable
    server fails here; 0 defers both to the first operation. The store uses one
    connection, serialised by a lock, whatever the number of threads; for more
    parallelism open more store objects (one per process or worker).
    """

    # the run row is the lock (see _sql_leases)
    _LOCK_FOR_TAKEOVER = " FOR UPDATE"
    _LOCK_FOR_FENCE = " FOR NO KEY UPDATE"

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
                    + ids(*RUN_COLS, "hash", "mhash")
                    + sql.SQL(") VALUES (")
                    + sql.SQL(", ").join(sql.Placeholder() * (len(RUN_COLS) + 2))
                    + sql.SQL(")"),
                    run_values(run),
                )
            except psycopg.errors.UniqueViolation:
                raise run_exists_error(run.id) from None
            c.execute(self._insert("steps", STEP_COLS), values(first_step, STEP_COLS))
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

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change a run's status, head step or error (the only mutable columns)."""
        with self.write() as c:
            self._update_run(c, run_id, fields)
        return self.get_run(run_id)

    def _update_run(self, c: psycopg.Connection[Any], run_id: str, fields: dict[str, Any]) -> None:
        check_mutable(fields)
        self._fence(c, run_id)
        # updated_at is always the time of this update (as in SQLiteStore)
        fields = {k: v for k, v in fields.items() if k != "updated_at"}
        if "error" in fields:
            fields["error"] = _storable_error(fields["error"])
        sets: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in fields]
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
        hook: Callable[[Any], None] | None = None,
    ) -> None:
        """Commit an activation (or a step boundary) in one transaction (G1).

        ``hook(conn)`` runs inside the same transaction, on its psycopg connection.

        The write row, the effects journaled with it, the next step row and the run's
        head advance all land together or not at all.
        """
        if run_fields:
            check_mutable(run_fields)
        with self.write() as c:
            self._fence(c, run_id)
            for w in writes:
                try:
                    c.execute(self._insert("writes", WRITE_COLS), values(w, WRITE_COLS))
                except psycopg.errors.UniqueViolation as e:
                    raise duplicate_write_error(run_id, w) from e
            for e in effects:
                c.execute(self._insert("effects", EFFECT_COLS, "ignore"), values(e, EFFECT_COLS))
            if step is not None:
                c.execute(self._insert("steps", STEP_COLS, "replace"), values(step, STEP_COLS))
            if hook is not None:
                hook(c)
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

    # -- effects, interrupts, attempts ---------------------------------------------------

    def record_effect(self, effect: EffectRecord, *, replace: bool = False) -> None:
        with self.write() as c:
            self._fence(c, effect.run_id)
            c.execute(
                self._insert("effects", EFFECT_COLS, "replace" if replace else "ignore"),
                values(effect, EFFECT_COLS),
            )

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
        return self._select("effects", where, params, '"step", "task_path", "seq"')

    def record_interrupt(self, intr: InterruptRecord, run_fields: dict[str, Any]) -> None:
        with self.write() as c:
            self._fence(c, intr.run_id)
            c.execute(
                self._insert("interrupts", INTERRUPT_COLS, "replace"),
                values(intr, INTERRUPT_COLS),
            )
            self._update_run(c, intr.run_id, run_fields)

    def answer_interrupt(self, intr: InterruptRecord, answer: str) -> None:
        new = intr.model_copy(update={"answer": answer})
        with self.write() as c:
            c.execute(
                self._insert("interrupts", INTERRUPT_COLS, "replace"),
                values(new, INTERRUPT_COLS),
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
                [getattr(attempt, c) for c in ATTEMPT_COLS],
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
                out.append(attempt_from_row(r))
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
