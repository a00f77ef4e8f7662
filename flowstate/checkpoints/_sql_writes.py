"""The write operations of ``SQLiteStore`` and ``PostgresStore``, written once.

Each is one transaction (``write()``), fenced when this store object holds the run's
lease. What the dialects do differently is behind five small hooks of each store:
``_stmt`` (render ``?`` and ``{table}``), ``_insert_stmt`` (plain, keep-existing or
replace inserts), ``_UNIQUE`` (the driver's unique-violation error), ``_stored_effect``
(SQLite keeps large effect results once, by content hash) and ``_stored_error``
(PostgreSQL text cannot hold NUL characters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from flowstate.clock import get_clock
from flowstate.errors import RunNotFound

from ._common import (
    EFFECT_COLS,
    INTERRUPT_COLS,
    RUN_COLS,
    STEP_COLS,
    WAKE_AT,
    WRITE_COLS,
    check_mutable,
    decode_row,
    duplicate_write_error,
    hashed_columns,
    run_exists_error,
    run_values,
    superseded_text,
    turn_taken_error,
    values,
)
from ._crypto import RowCipher
from ._records import EffectRecord, InterruptRecord, RunRecord, StepRecord, WriteRecord, row_hash

__all__ = ["SQLWrites"]

_RUN_INSERT = (
    "INSERT INTO {runs} ("
    + ", ".join(f'"{c}"' for c in (*RUN_COLS, "hash", "mhash"))
    + ") VALUES ("
    + ", ".join("?" for _ in range(len(RUN_COLS) + 2))
    + ")"
)


_CLOSE_UPDATE = (
    'UPDATE {runs} SET "status" = ?, "head_step" = ?, "error" = ?, '
    '"updated_at" = ?, "mhash" = ?, '
    '"wake_at" = CASE WHEN ? = \'paused\' THEN "wake_at" ELSE NULL END '
    'WHERE "id" = ?'
)
"""The run row's update of a step close (the mutable hash is computed by the caller)."""


class SQLWrites:
    """Creating runs, committing activations, journaling effects and interrupts on the SQL
    stores; uses their ``write``, ``_fence`` and the dialect hooks above."""

    _UNIQUE: ClassVar[type[Exception]]
    """The driver's error for a violated primary key or unique constraint."""

    fences: dict[str, tuple[str, int]]
    write: Callable[[], AbstractContextManager[Any]]
    _fence: Callable[[Any, str], None]
    _stmt: Callable[[str], Any]
    _insert_stmt: Callable[[str, Sequence[str], str], Any]
    get_run: Callable[[str], RunRecord]
    cipher: RowCipher
    """Seals payload columns before a row and its hash are computed (``_crypto``)."""

    def _stored_effect(self, c: Any, e: EffectRecord) -> EffectRecord:
        """The effect row as stored (SQLite swaps a large result for a blob reference)."""
        return e

    def _stored_error(self, error: Any) -> Any:
        """The ``error`` column as stored (PostgreSQL replaces NUL characters)."""
        return error

    def _commit_write(self) -> AbstractContextManager[Any]:
        """The transaction of a ``commit`` (SQLite leaves its identity check to
        ``_commit_fence``, which reads the database id with the fence)."""
        return self.write()

    def _commit_fence(self, c: Any, run_id: str) -> None:
        """The fence check first in a ``commit`` transaction (``_fence``)."""
        self._fence(c, run_id)

    # -- runs -----------------------------------------------------------------------------

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
                c.execute(self._stmt(_RUN_INSERT), run_values(self.cipher.seal("runs", run)))
            except self._UNIQUE:
                if run.thread_id is not None:
                    raise turn_taken_error(run) from None
                raise run_exists_error(run.id) from None
            c.execute(
                self._insert_stmt("steps", STEP_COLS, ""),
                values(self.cipher.seal("steps", first_step), STEP_COLS),
            )
            if owner is not None:
                c.execute(
                    self._stmt(
                        'UPDATE {runs} SET "owner" = ?, "epoch" = 1, "lease_until" = ? '
                        'WHERE "id" = ?'
                    ),
                    [owner, time.time() + ttl, run.id],
                )
        if owner is not None:
            self.fences[run.id] = (owner, 1)

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change a run's status, head step or error (the only mutable columns)."""
        with self.write() as c:
            self._update_run(c, run_id, fields)
        return self.get_run(run_id)

    def _update_run(self, c: Any, run_id: str, fields: dict[str, Any]) -> None:
        check_mutable(fields)  # the column names below come from this allow-list
        self._fence(c, run_id)
        # updated_at is always the time of this update
        now = float(get_clock().now())
        wake = fields.get(WAKE_AT)
        fields = {k: v for k, v in fields.items() if k not in ("updated_at", WAKE_AT)}
        if "error" in fields:
            fields["error"] = self._stored_error(fields["error"])
        sets = "".join(f'"{k}" = ?, ' for k in fields)
        params = list(fields.values())
        if fields.get("status") == "paused" and wake is not None:
            sets += (
                '"wake_at" = CASE WHEN "wake_at" IS NULL OR "wake_at" > ? THEN ? '
                'ELSE "wake_at" END, '
            )
            params += [float(wake), float(wake)]
        elif "status" in fields and fields["status"] != "paused":
            sets += '"wake_at" = NULL, '
        row = c.execute(
            self._stmt(
                f'UPDATE {{runs}} SET {sets}"updated_at" = ? WHERE "id" = ? '
                'RETURNING "status", "head_step", "error", "updated_at"'
            ),
            [*params, now, run_id],
        ).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        # hashed with the float bound, not the value RETURNING echoes: SQLite returns a
        # whole-number REAL (a test clock's 1000.0) as the integer 1000
        c.execute(
            self._stmt('UPDATE {runs} SET "mhash" = ? WHERE "id" = ?'),
            [row_hash(row[0], row[1], row[2], now), run_id],
        )

    # -- activations ----------------------------------------------------------------------

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

        The write row, the effects journaled with it, the next step row and the run's
        head advance all land together or not at all. ``hook(conn)`` runs inside the same
        transaction (the engine applies a node's memory writes there).
        """
        if run_fields:
            check_mutable(run_fields)
        with self._commit_write() as c:
            self._commit_body(c, run_id, writes, effects, step, run_fields, hook)

    def _commit_body(
        self,
        c: Any,
        run_id: str,
        writes: Sequence[WriteRecord],
        effects: Sequence[EffectRecord],
        step: StepRecord | None,
        run_fields: dict[str, Any] | None,
        hook: Callable[[Any], None] | None,
    ) -> None:
        """What ``commit`` does inside its transaction (``commit_many`` too)."""
        seal = self.cipher.seal
        self._commit_fence(c, run_id)
        for w in writes:
            try:
                c.execute(
                    self._insert_stmt("writes", WRITE_COLS, ""),
                    values(seal("writes", w), WRITE_COLS),
                )
            except self._UNIQUE as e:
                raise duplicate_write_error(run_id, w) from e
        for e in effects:
            c.execute(
                self._insert_stmt("effects", EFFECT_COLS, "ignore"),
                values(self._stored_effect(c, self.cipher.seal("effects", e)), EFFECT_COLS),
            )
        if step is not None:
            c.execute(
                self._insert_stmt("steps", STEP_COLS, "replace"),
                values(seal("steps", step), STEP_COLS),
            )
        if hook is not None:
            hook(c)
        if run_fields:
            if set(run_fields) >= {"status", "head_step", "error"}:
                # the engine's step close: one statement, the mutable hash computed here
                now = get_clock().now()
                st, hs = run_fields["status"], run_fields["head_step"]
                er = self._stored_error(run_fields["error"])
                cur = c.execute(
                    self._stmt(_CLOSE_UPDATE),
                    [st, hs, er, now, row_hash(st, hs, er, now), st, run_id],
                )
                if cur.rowcount != 1:
                    raise RunNotFound(run_id)
            else:
                self._update_run(c, run_id, run_fields)

    def supersede_writes(self, run_id: str, step: int) -> int:
        """Move the step's write rows to ``attempts`` (see the protocol)."""
        with self.write() as c:
            self._fence(c, run_id)
            rows = c.execute(
                self._stmt(
                    "SELECT "
                    + ", ".join(f'"{k}"' for k in hashed_columns("writes"))
                    + ' FROM {writes} WHERE "run_id" = ? AND "step" = ? AND "seq" >= 0 '
                    'ORDER BY "seq"'
                ),
                [run_id, step],
            ).fetchall()
            if not rows:
                return 0
            low = c.execute(
                self._stmt(
                    'SELECT MIN("attempt") FROM {attempts} WHERE "run_id" = ? AND "step" = ?'
                ),
                [run_id, step],
            ).fetchone()
            n = min(-1, (low[0] or 0) - 1)
            now = time.time()
            for r in rows:
                w: WriteRecord = decode_row("writes", r)  # a damaged row is not moved
                w = self.cipher.open("writes", w)
                text = superseded_text(w)
                key = (run_id, step, w.task_path, n)
                c.execute(
                    self._stmt(
                        'INSERT INTO {attempts} ("run_id", "step", "task_path", "attempt", '
                        '"error", "created_at") VALUES (?, ?, ?, ?, ?, ?)'
                    ),
                    [
                        run_id,
                        step,
                        w.task_path,
                        n,
                        self.cipher.seal_value("attempts", "error", key, text),
                        now,
                    ],
                )
            c.execute(
                self._stmt('DELETE FROM {writes} WHERE "run_id" = ? AND "step" = ? AND "seq" >= 0'),
                [run_id, step],
            )
            return len(rows)

    # -- effects and interrupts -----------------------------------------------------------

    def record_effect(self, effect: EffectRecord, *, replace: bool = False) -> None:
        """Journal an effect (first record wins; ``replace`` overwrites it: a resumed
        activation whose request changed ran the effect again)."""
        with self.write() as c:
            self._fence(c, effect.run_id)
            c.execute(
                self._insert_stmt("effects", EFFECT_COLS, "replace" if replace else "ignore"),
                values(self._stored_effect(c, self.cipher.seal("effects", effect)), EFFECT_COLS),
            )

    def record_interrupt(self, intr: InterruptRecord, run_fields: dict[str, Any]) -> None:
        with self.write() as c:
            self._fence(c, intr.run_id)
            c.execute(
                self._insert_stmt("interrupts", INTERRUPT_COLS, "replace"),
                values(self.cipher.seal("interrupts", intr), INTERRUPT_COLS),
            )
            self._update_run(c, intr.run_id, run_fields)

    def answer_interrupt(self, intr: InterruptRecord, answer: str) -> None:
        new = intr.model_copy(update={"answer": answer})
        with self.write() as c:
            c.execute(
                self._insert_stmt("interrupts", INTERRUPT_COLS, "replace"),
                values(self.cipher.seal("interrupts", new), INTERRUPT_COLS),
            )
