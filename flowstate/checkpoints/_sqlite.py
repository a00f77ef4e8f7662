"""The embedded checkpoint store: one SQLite file, WAL, ``BEGIN IMMEDIATE`` writes.

Why ``BEGIN IMMEDIATE`` and not sqlite-utils' ``atomic()``: a deferred ``BEGIN`` takes
the write lock only at the first write, and two connections that both read first can
deadlock, which SQLite reports at once as "database is locked" whatever the busy
timeout. Taking the write lock up front means the busy timeout applies and nothing after
``BEGIN IMMEDIATE`` can return SQLITE_BUSY (RELIABILITY.md, G6). sqlite-utils still owns
the schema: tables are created by migrations registered on ``sqlite_utils.Migrations``.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from flowstate.errors import RunNotFound

from ._common import (
    EFFECT_COLS,
    INTERRUPT_COLS,
    RUN_COLS,
    STEP_COLS,
    WRITE_COLS,
    check_mutable,
    duplicate_write_error,
    run_exists_error,
    run_filters,
    run_values,
    values,
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
from ._sql_leases import SQLLeases
from ._sql_reads import SQLReads
from ._sqlite_conn import Durability, SQLiteConnection
from ._sqlite_maint import SQLiteMaintenance, blobbed

__all__ = ["Durability", "SQLiteStore"]

@functools.cache
def _insert_sql(table: str, cols: tuple[str, ...], verb: str = "INSERT") -> str:
    names = ", ".join(f'"{c}"' for c in (*cols, "hash"))
    marks = ", ".join("?" for _ in range(len(cols) + 1))
    return f'{verb} INTO "{table}" ({names}) VALUES ({marks})'


_RUN_INSERT = (
    'INSERT INTO "runs" ('
    + ", ".join(f'"{c}"' for c in (*RUN_COLS, "hash", "mhash"))
    + ") VALUES ("
    + ", ".join("?" for _ in range(len(RUN_COLS) + 2))
    + ")"
)


class SQLiteStore(SQLiteConnection, SQLReads, SQLLeases, SQLiteMaintenance):
    """Checkpoint store on one SQLite file.

    One connection per store object, used from one event loop; every write is one
    ``BEGIN IMMEDIATE … COMMIT``. Several processes may share the file.
    """

    # -- runs -----------------------------------------------------------------------

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
                c.execute(_RUN_INSERT, run_values(run))
            except sqlite3.IntegrityError:
                raise run_exists_error(run.id) from None
            c.execute(_insert_sql("steps", STEP_COLS), values(first_step, STEP_COLS))
            if owner is not None:
                c.execute(
                    "UPDATE runs SET owner = ?, epoch = 1, lease_until = ? WHERE id = ?",
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
        filters = run_filters(status=status, graph=graph, parent_id=parent_id, before=before)
        clauses = ["1 = 1", *(f"{col} {op} ?" for col, op, _ in filters)]
        params: list[Any] = [v for _, _, v in filters]
        if not include_children:
            # child runs of subgraph activations have '/' in their id
            clauses.append("instr(id, '/') = 0")
        params.append(int(limit))
        return self._select(
            "runs", " AND ".join(clauses) + " ORDER BY created_at DESC, id LIMIT ?", params
        )

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change a run's status, head step or error (the only mutable columns)."""
        with self.write() as c:
            self._update_run(c, run_id, fields)
        return self.get_run(run_id)

    def _update_run(self, c: sqlite3.Connection, run_id: str, fields: dict[str, Any]) -> None:
        check_mutable(fields)
        self._fence(c, run_id)
        sets = [f'"{k}" = ?' for k in fields]
        vals = list(fields.values())
        now = time.time()
        cur = c.execute(
            f"UPDATE runs SET {', '.join(sets)}{', ' if sets else ''}updated_at = ? "
            "WHERE id = ? RETURNING status, head_step, error, updated_at",
            [*vals, now, run_id],
        ).fetchone()
        if cur is None:
            raise RunNotFound(run_id)
        c.execute("UPDATE runs SET mhash = ? WHERE id = ?", [row_hash(*cur), run_id])

    # -- steps and writes -------------------------------------------------------------

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

        ``hook(conn)`` runs inside the same transaction (the engine applies a node's
        memory writes there).

        The write row, the effects journaled with it, the next step row and the run's
        head advance all land together or not at all.
        """
        if run_fields:
            check_mutable(run_fields)
        with self.write() as c:
            self._fence(c, run_id)
            for w in writes:
                try:
                    c.execute(_insert_sql("writes", WRITE_COLS), values(w, WRITE_COLS))
                except sqlite3.IntegrityError as e:
                    raise duplicate_write_error(run_id, w) from e
            for e in effects:
                c.execute(
                    _insert_sql("effects", EFFECT_COLS, "INSERT OR IGNORE"),
                    values(blobbed(c, e), EFFECT_COLS),
                )
            if step is not None:
                c.execute(
                    _insert_sql("steps", STEP_COLS, "INSERT OR REPLACE"), values(step, STEP_COLS)
                )
            if hook is not None:
                hook(c)
            if run_fields:
                if set(run_fields) >= {"status", "head_step", "error"}:
                    now = time.time()
                    st, hs, er = run_fields["status"], run_fields["head_step"], run_fields["error"]
                    cur = c.execute(
                        "UPDATE runs SET status = ?, head_step = ?, error = ?, updated_at = ?, "
                        "mhash = ? WHERE id = ?",
                        [st, hs, er, now, row_hash(st, hs, er, now), run_id],
                    )
                    if cur.rowcount != 1:
                        raise RunNotFound(run_id)
                else:
                    self._update_run(c, run_id, run_fields)

    # -- effects, interrupts, attempts -------------------------------------------------

    def record_effect(self, effect: EffectRecord, *, replace: bool = False) -> None:
        """Journal an effect (first record wins; ``replace`` overwrites it: a resumed
        activation whose request changed ran the effect again)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self.write() as c:
            self._fence(c, effect.run_id)
            c.execute(
                _insert_sql("effects", EFFECT_COLS, verb),
                values(blobbed(c, effect), EFFECT_COLS),
            )

    def effects(
        self, run_id: str, step: int | None = None, task_path: str | None = None
    ) -> list[EffectRecord]:
        where, params = "run_id = ?", [run_id]
        if step is not None:
            where += " AND step = ?"
            params.append(step)  # type: ignore[arg-type]
        if task_path is not None:
            where += " AND task_path = ?"
            params.append(task_path)
        rows = self._select("effects", where, params, "step, task_path, seq")
        return [self._unblob(e) for e in rows]

    def record_interrupt(self, intr: InterruptRecord, run_fields: dict[str, Any]) -> None:
        with self.write() as c:
            self._fence(c, intr.run_id)
            c.execute(
                _insert_sql("interrupts", INTERRUPT_COLS, "INSERT OR REPLACE"),
                values(intr, INTERRUPT_COLS),
            )
            self._update_run(c, intr.run_id, run_fields)

    def answer_interrupt(self, intr: InterruptRecord, answer: str) -> None:
        new = intr.model_copy(update={"answer": answer})
        with self.write() as c:
            c.execute(
                _insert_sql("interrupts", INTERRUPT_COLS, "INSERT OR REPLACE"),
                values(new, INTERRUPT_COLS),
            )

    def record_attempt(self, attempt: AttemptRecord) -> None:
        with self.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO attempts (run_id, step, task_path, attempt, error, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    attempt.run_id,
                    attempt.step,
                    attempt.task_path,
                    attempt.attempt,
                    attempt.error,
                    attempt.created_at,
                ],
            )

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        rows = self._read(
            "SELECT run_id, step, task_path, attempt, error, created_at FROM attempts "
            "WHERE run_id = ? ORDER BY step, task_path, attempt",
            [run_id],
        )
        return [
            AttemptRecord(
                run_id=r[0], step=r[1], task_path=r[2], attempt=r[3], error=r[4], created_at=r[5]
            )
            for r in rows
        ]

    # -- signals: pause and cancel requests from other processes ----------------------

    def send_signal(self, run_id: str, kind: str) -> None:
        with self.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO signals (run_id, kind, created_at) VALUES (?, ?, ?)",
                [run_id, kind, time.time()],
            )
