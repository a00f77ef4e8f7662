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
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from flowstate.errors import RunNotFound, StoreError

from ._common import (
    check_fence,
    check_mutable,
    run_filters,
)
from ._protocol import CommitEntry
from ._records import (
    AttemptRecord,
    EffectRecord,
    RunRecord,
)
from ._sql_events import EventRow
from ._sql_leases import SQLLeases
from ._sql_reads import SQLReads
from ._sql_timers import SQLTimers
from ._sql_writes import SQLWrites
from ._sqlite_conn import _DAMAGE, _UNREAD, Durability, SQLiteConnection
from ._sqlite_events import SQLiteEvents
from ._sqlite_maint import SQLiteMaintenance, blobbed

__all__ = ["Durability", "SQLiteStore"]


@functools.cache
def _insert_sql(table: str, cols: tuple[str, ...], verb: str = "INSERT") -> str:
    names = ", ".join(f'"{c}"' for c in (*cols, "hash"))
    marks = ", ".join("?" for _ in range(len(cols) + 1))
    return f'{verb} INTO "{table}" ({names}) VALUES ({marks})'


class SQLiteStore(
    SQLiteConnection, SQLReads, SQLWrites, SQLLeases, SQLTimers, SQLiteMaintenance, SQLiteEvents
):
    """Checkpoint store on one SQLite file.

    One connection per store object, used from one event loop; every write is one
    ``BEGIN IMMEDIATE … COMMIT``. Several processes may share the file.
    """

    _UNIQUE = sqlite3.IntegrityError
    _VERBS: ClassVar[dict[str, str]] = {
        "": "INSERT",
        "ignore": "INSERT OR IGNORE",
        "replace": "INSERT OR REPLACE",
    }

    def _insert_stmt(self, table: str, cols: Sequence[str], mode: str) -> str:
        return _insert_sql(table, tuple(cols), self._VERBS[mode])

    def _stored_effect(self, c: Any, e: EffectRecord) -> EffectRecord:
        return blobbed(c, e)

    # -- group commit: several activations in one transaction ---------------------------

    def commit_many(
        self,
        entries: Sequence[CommitEntry],
        events: Mapping[str, Sequence[EventRow]] | None = None,
    ) -> list[Exception | None]:
        """Commit several activations (of one run or of several) in one transaction.

        Each entry is what one ``commit`` call would write. A run's entries are
        all-or-nothing together, in a savepoint of their own: a run whose fence check or
        any write fails is left out, with the error in its entries' results, and the
        other runs commit. Returns one result per entry: None once it is committed, or
        the error that left it out. A failure of the transaction itself (BEGIN, COMMIT,
        the disk, the file replaced) raises: nothing of any entry was committed.
        ``events``: run events (``append_events`` rows, by run) written in the same
        transaction, so that the buffered events of the runs cost no transaction of
        their own.
        """
        by_run: dict[str, list[int]] = {}
        for i, e in enumerate(entries):
            if e.run_fields:
                check_mutable(e.run_fields)
            by_run.setdefault(e.run_id, []).append(i)
        out: list[Exception | None] = [None] * len(entries)
        with self.write() as c:
            for run_id, idx in by_run.items():
                c.execute("SAVEPOINT fs_group")
                try:
                    for i in idx:
                        e = entries[i]
                        self._commit_body(c, run_id, e.writes, (), e.step, e.run_fields, e.hook)
                except Exception as err:
                    if isinstance(err, sqlite3.DatabaseError) and not isinstance(
                        err, sqlite3.IntegrityError
                    ):
                        raise  # the disk or the file: the whole transaction fails
                    c.execute("ROLLBACK TO fs_group")
                    c.execute("RELEASE fs_group")
                    if isinstance(err, sqlite3.IntegrityError):
                        err = StoreError(
                            f"write refused by a constraint of checkpoint database "
                            f"{self.path}: {err}; nothing of run {run_id}'s activations in "
                            "this commit was kept"
                        )
                    for i in idx:
                        out[i] = err
                    continue
                c.execute("RELEASE fs_group")
            for run_id, rows in (events or {}).items():
                if rows:
                    self._insert_events(c, run_id, rows)
        return out

    # -- the commit of an activation: its fence and the file's identity in one read ----

    _FENCE_AND_ID = (
        'SELECT "owner", "epoch", EXISTS (SELECT 1 FROM signals WHERE "run_id" = ? '
        """AND "kind" = 'cancel'), (SELECT "value" FROM meta WHERE "key" = 'database_id') """
        'FROM runs WHERE "id" = ?'
    )

    def _commit_write(self) -> AbstractContextManager[Any]:
        return self.write(identity=False)

    def _commit_fence(self, c: Any, run_id: str) -> None:
        """``_check_identity`` and ``_fence`` with one statement: the run's owner, epoch
        and pending cancel, and the database id, read together (a run row that is not
        there, or a failed read, falls back to the separate identity check, which then
        names a replaced file before anything else)."""
        try:
            row = c.execute(self._FENCE_AND_ID, [run_id, run_id]).fetchone()
        except _DAMAGE:
            self._check_identity(c)
            raise
        self._check_identity(c, _UNREAD if row is None else row[3])
        fence = self.fences.get(run_id)
        if fence is None:
            if row is None:
                raise RunNotFound(run_id)
            return
        check_fence(run_id, fence, row, cancelled=bool(row and row[2]))

    # -- runs -----------------------------------------------------------------------

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

    # -- steps and writes -------------------------------------------------------------

    # -- effects, interrupts, attempts -------------------------------------------------

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
        # a large result is a blob of its ciphertext: opened once it is swapped back in
        return [self.cipher.open("effects", self._unblob(e)) for e in rows]

    def record_attempt(self, attempt: AttemptRecord) -> None:
        with self.write() as c:
            self._fence(c, attempt.run_id)  # a former owner stores nothing
            c.execute(
                "INSERT OR REPLACE INTO attempts (run_id, step, task_path, attempt, error, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    attempt.run_id,
                    attempt.step,
                    attempt.task_path,
                    attempt.attempt,
                    self.cipher.seal("attempts", attempt).error,
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
            self.cipher.open(
                "attempts",
                AttemptRecord(
                    run_id=r[0],
                    step=r[1],
                    task_path=r[2],
                    attempt=r[3],
                    error=r[4],
                    created_at=r[5],
                ),
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
