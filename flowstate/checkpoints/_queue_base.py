"""The fleet's queue written once for ``RunQueue`` (PostgreSQL, ``_queue``) and
``SQLiteRunQueue`` (one SQLite file, ``_sqlite_queue``): the records, and every operation
whose logic is the same on both: enqueueing, the bookkeeping after a claim (reasons, dead
letters), giving a claim up or back, failures, the worker rows and heartbeats.

The statements are written in one neutral form (``?`` parameters, quoted identifiers,
``{queue}`` for the table) that the store renders with ``_stmt`` (see ``_sql_leases``);
what each dialect writes differently is behind small hooks of the subclass: ``_among``
(a column among a list of values), ``_GREATEST``, ``_LOCK_ROW``, ``_INSERT_WORKER``,
``_WORKERS`` with ``_holding``, ``_DIED`` and ``_notify``. Claiming and ``next_due``,
whose SQL differs throughout (``SKIP LOCKED`` against one write lock), are each
subclass's ``_claim`` and ``_next_due``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from flowstate.errors import RunOwned, RunStateError

from ._common import STEP_COLS, run_exists_error, run_values, values
from ._flow import FlowControl
from ._records import RunRecord, StepRecord
from ._sql_writes import _RUN_INSERT

__all__ = [
    "CLAIMABLE",
    "Claim",
    "QueuedRun",
    "SQLQueue",
    "WorkerInfo",
    "in_memory_reason",
]

CLAIMABLE = ("queued", "running", "failed")
"""Run statuses a queue row may be claimed in (``failed``: a retry after a backoff)."""


@dataclass(frozen=True)
class Claim:
    """A queue row a worker claimed: the run to execute."""

    run_id: str
    graph: str
    queue: str
    attempts: int
    """Claims of this row so far, this one included."""
    max_attempts: int
    took_over: bool
    """The run's last worker died holding it (its claim expired with the run running)."""


@dataclass(frozen=True)
class QueuedRun:
    """A row of the queue, for ``flowstate queue`` and tests."""

    run_id: str
    queue: str
    graph: str
    attempts: int
    max_attempts: int
    worker: str | None
    claimed_until: float | None
    available_at: float
    reasons: list[str]


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process as it advertises itself (``flowstate workers``)."""

    id: str
    host: str
    pid: int
    queues: list[str]
    graphs: dict[str, str]
    """Graph name -> fingerprint of the code this worker runs."""
    concurrency: int
    state: str
    """``running``, ``draining`` or ``stopped``."""
    started_at: float
    heartbeat_at: float
    holding: list[str]
    """Run ids this worker holds a claim on."""


def in_memory_reason(store: Any) -> str | None:
    """Why an in-memory store cannot hold a fleet's queue, and the fix (None: not one)."""
    from ._memory_store import InMemoryStore

    if isinstance(store, InMemoryStore) or getattr(store, "memory", False):
        return (
            "an in-memory database lives inside one process, so no worker process can see "
            "its queue; open an SQLite file for several processes on one machine "
            "(--db runs.db) or PostgreSQL for several machines (--db postgresql://...)"
        )
    return None


def _reason_list(text: Any) -> list[str]:
    """The ``reasons`` column (a JSON list of strings) as a list."""
    try:
        got = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return [f"unreadable reasons: {text!r}"]
    return [str(x) for x in got] if isinstance(got, list) else []


def _picking(
    queues: Sequence[str], graphs: Sequence[str], exclude: Sequence[str], orphans: bool
) -> dict[str, list[str]]:
    """The rows a worker may claim: of its queues and graphs, not in ``exclude``, of a run
    in a claimable status (``orphans``: only runs left ``running`` by a worker that died
    or handed them back)."""
    return {
        "queues": list(queues),
        "graphs": list(graphs),
        "exclude": list(exclude),
        "statuses": ["running"] if orphans else list(CLAIMABLE),
    }


class SQLQueue:
    """The operations of ``RunQueue`` and ``SQLiteRunQueue`` written once; every one is one
    transaction on the store's connection (``store.write()``)."""

    store: Any
    flow: FlowControl
    """Concurrency limits per queue and rate limits per key (``flow_limits``)."""
    channel: str
    """The LISTEN/NOTIFY channel ("" where workers poll)."""

    polls = False
    """Whether workers must poll for changes (``changed()``) instead of listening."""

    _GREATEST: ClassVar[str]
    """The dialect's two-argument maximum (``greatest``, ``max``)."""
    _LOCK_ROW: ClassVar[str]
    """Appended to the SELECT of a queue row that is then updated."""
    _INSERT_WORKER: ClassVar[str]
    """The verb that inserts a worker's row."""
    _WORKERS: ClassVar[str]
    """SELECT of the worker rows, each with the runs it holds last (see ``_holding``)."""
    _DIED: ClassVar[str]
    """How a worker that died holding a run let it go, for the run's reasons."""

    def _among(self, column: str, items: Sequence[Any]) -> tuple[str, list[Any]]:
        """The condition ``column`` is one of ``items``, and its parameters."""
        raise NotImplementedError

    def _holding(self, value: Any) -> list[str]:
        """The run ids of the last column of ``_WORKERS``."""
        raise NotImplementedError

    def _notify(self, c: Any, payload: str) -> None:
        """Announce ``payload`` (``work:<run_id>``) to listening workers at COMMIT."""

    def _stmt(self, template: str) -> Any:
        return self.store._stmt(template)

    # -- enqueueing --------------------------------------------------------------------

    def _upsert(
        self,
        c: Any,
        run_id: str,
        graph: str,
        *,
        queue: str,
        max_attempts: int,
        priority: int,
        delay: float,
    ) -> None:
        now = time.time()
        c.execute(
            self._stmt(
                'INSERT INTO {queue} ("run_id", "queue", "graph", "priority", "available_at", '
                '"attempts", "max_attempts", "created_at") VALUES (?, ?, ?, ?, ?, 0, ?, ?) '
                'ON CONFLICT ("run_id") DO UPDATE SET "queue" = EXCLUDED."queue", '
                '"priority" = EXCLUDED."priority", "available_at" = EXCLUDED."available_at", '
                '"attempts" = 0, "max_attempts" = EXCLUDED."max_attempts", "worker" = NULL, '
                '"claimed_until" = NULL, "reasons" = \'[]\''
            ),
            [run_id, queue, graph, priority, now + delay, max_attempts, now],
        )
        self._notify(c, f"work:{run_id}")

    def enqueue_new(
        self,
        run: RunRecord,
        first_step: StepRecord,
        *,
        queue: str = "default",
        max_attempts: int = 3,
        priority: int = 0,
        delay: float = 0.0,
    ) -> None:
        """Store a new run (status ``queued``) and its queue row in one transaction."""
        store = self.store
        with store.write() as c:
            try:
                c.execute(store._stmt(_RUN_INSERT), run_values(store.cipher.seal("runs", run)))
            except store._UNIQUE:
                raise run_exists_error(run.id) from None
            c.execute(
                store._insert_stmt("steps", STEP_COLS, ""),
                values(store.cipher.seal("steps", first_step), STEP_COLS),
            )
            if run.status == "queued":  # a run that ends at once (START -> END) is done
                self._upsert(
                    c,
                    run.id,
                    run.graph,
                    queue=queue,
                    max_attempts=max_attempts,
                    priority=priority,
                    delay=delay,
                )

    def enqueue(
        self,
        run_id: str,
        *,
        queue: str = "default",
        max_attempts: int = 3,
        priority: int = 0,
        delay: float = 0.0,
    ) -> RunRecord:
        """Put an existing run (paused with its answers recorded, failed, cancelled, dead,
        or crashed outside the fleet) on the queue: status ``queued``, attempts reset.
        Refused for a completed run and for one a live process is executing."""
        store = self.store
        run = store.get_run(run_id)
        if run.status == "completed":
            raise RunStateError(f"run {run_id} is completed; there is nothing to requeue")
        owner, _, until = store.lease(run_id)
        if owner and until is not None and until > time.time():
            raise RunOwned(run_id, owner, until)
        with store.write() as c:
            store._update_run(c, run_id, {"status": "queued", "error": None})
            self._upsert(
                c,
                run_id,
                run.graph,
                queue=queue,
                max_attempts=max_attempts,
                priority=priority,
                delay=delay,
            )
        return store.get_run(run_id)

    # -- claiming ----------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        n: int,
        *,
        queues: Sequence[str],
        graphs: Sequence[str],
        ttl: float,
        exclude: Sequence[str] = (),
        orphans: bool = False,
        alive: Callable[[str], bool | None] | None = None,
    ) -> list[Claim]:
        """Claim up to ``n`` due runs for ``worker``; rows past ``max_attempts`` are buried
        (status ``dead``) instead of returned. ``orphans``: only runs left ``running`` by
        a worker that died (or handed them back). ``alive(worker) -> bool | None``: where
        it says False (a dead process on this host), a claim and lease are free at once
        (used on SQLite, whose workers share one host; ignored on PostgreSQL)."""
        if n <= 0:
            return []
        return self._claim(worker, n, ttl, alive, _picking(queues, graphs, exclude, orphans))

    def _claim(
        self, worker: str, n: int, ttl: float, alive: Any, pick: dict[str, list[str]]
    ) -> list[Claim]:
        """``claim`` in the dialect, ``n`` > 0, of the rows ``pick`` selects."""
        raise NotImplementedError

    def next_due(
        self,
        *,
        queues: Sequence[str],
        graphs: Sequence[str],
        exclude: Sequence[str] = (),
        orphans: bool = False,
    ) -> float | None:
        """The earliest time a run this worker could claim becomes claimable (its delay,
        its last claim or its lease running out), or None when there is none."""
        return self._next_due(_picking(queues, graphs, exclude, orphans))

    def _next_due(self, pick: dict[str, list[str]]) -> float | None:
        """``next_due`` in the dialect, over the rows ``pick`` selects."""
        raise NotImplementedError

    def _claimed(
        self,
        c: Any,
        run_id: str,
        graph: str,
        queue: str,
        attempts: int,
        max_attempts: int,
        reasons: Any,
        prev: Any,
        status: str,
        step: Any,
    ) -> Claim | None:
        """Inside a claim, the row just taken (its previous worker ``prev``, the run's
        ``status`` and head ``step`` before the claim): a previous worker that died holding
        the run is recorded among the reasons, and a run past ``max_attempts`` is buried.
        The claim, or None when buried."""
        died = prev is not None and status == "running"
        reasons = _reason_list(reasons)
        if died:
            reasons.append(
                f"attempt {attempts - 1}: worker {prev} stopped holding the run "
                f"({self._DIED}) at step {step}"
            )
            c.execute(
                self._stmt('UPDATE {queue} SET "reasons" = ? WHERE "run_id" = ?'),
                [json.dumps(reasons), run_id],
            )
        if attempts > max_attempts:
            self._bury(c, run_id, max_attempts, reasons)
            return None
        return Claim(run_id, graph, queue, attempts, max_attempts, died)

    def _bury(self, c: Any, run_id: str, max_attempts: int, reasons: list[str]) -> None:
        error = f"dead letter after {max_attempts} attempts: " + "; ".join(reasons[-max_attempts:])
        self.store._update_run(c, run_id, {"status": "dead", "error": error})
        c.execute(self._stmt('DELETE FROM {queue} WHERE "run_id" = ?'), [run_id])

    # -- after a claim -----------------------------------------------------------------

    def done(self, run_id: str, worker: str) -> None:
        """The run stopped (completed, paused, cancelled): its queue row goes."""
        with self.store.write() as c:
            c.execute(
                self._stmt('DELETE FROM {queue} WHERE "run_id" = ? AND "worker" = ?'),
                [run_id, worker],
            )

    def hand_back(self, run_id: str, worker: str, *, reason: str | None = None) -> None:
        """Give a claim up without counting it as an attempt (a drain, a graph this worker
        cannot run, a run another process holds)."""
        with self.store.write() as c:
            c.execute(
                self._stmt(
                    'UPDATE {queue} SET "worker" = NULL, "claimed_until" = NULL, '
                    f'"attempts" = {self._GREATEST}("attempts" - 1, 0) '
                    'WHERE "run_id" = ? AND "worker" = ?'
                ),
                [run_id, worker],
            )
            self._notify(c, f"work:{run_id}")

    def failed(self, run_id: str, worker: str, reason: str, *, backoff: float) -> str:
        """The run failed (its node's retries exhausted): retried after ``backoff`` seconds
        while attempts remain, else buried. Returns ``"retry"`` or ``"dead"``."""
        with self.store.write() as c:
            row = c.execute(
                self._stmt(
                    'SELECT "attempts", "max_attempts", "reasons" FROM {queue} '
                    'WHERE "run_id" = ? AND "worker" = ?' + self._LOCK_ROW
                ),
                [run_id, worker],
            ).fetchone()
            if row is None:
                return "gone"  # no longer ours
            attempts, max_attempts, reasons = int(row[0]), int(row[1]), _reason_list(row[2])
            reasons.append(f"attempt {attempts}: failed: {reason}")
            if attempts >= max_attempts:
                self._bury(c, run_id, max_attempts, reasons)
                return "dead"
            c.execute(
                self._stmt(
                    'UPDATE {queue} SET "worker" = NULL, "claimed_until" = NULL, '
                    '"available_at" = ?, "reasons" = ? WHERE "run_id" = ?'
                ),
                [time.time() + backoff, json.dumps(reasons), run_id],
            )
            return "retry"

    def release_lease(self, run_id: str, owner: str, epoch: int) -> None:
        """Free the run's lease at the SQL level, leaving this store object's fence in
        place: an execution of ours still in flight has every later commit refused
        (``LeaseLost``), and another worker may take the run at once."""
        with self.store.write() as c:
            c.execute(
                self._stmt(
                    'UPDATE {runs} SET "owner" = NULL, "lease_until" = NULL '
                    'WHERE "id" = ? AND "owner" = ? AND "epoch" = ?'
                ),
                [run_id, owner, epoch],
            )

    def cancel_requests(self, run_ids: Sequence[str]) -> list[str]:
        """Which of ``run_ids`` have a pending cancel request."""
        among, params = self._among('"run_id"', run_ids)
        rows = self.store._read(
            self._stmt('SELECT "run_id" FROM {signals} WHERE "kind" = \'cancel\' AND ' + among),
            params,
        )
        return [str(r[0]) for r in rows]

    # -- workers -----------------------------------------------------------------------

    def register(
        self, worker: str, *, queues: Sequence[str], graphs: dict[str, str], concurrency: int
    ) -> None:
        now = time.time()
        with self.store.write() as c:
            # forget workers silent for a day (their claims expired long ago)
            c.execute(self._stmt('DELETE FROM {workers} WHERE "heartbeat_at" < ?'), [now - 86400])
            c.execute(
                self._stmt(
                    self._INSERT_WORKER + ' INTO {workers} ("id", "host", "pid", "queues", '
                    '"graphs", "concurrency", "state", "started_at", "heartbeat_at") '
                    "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)"
                ),
                [
                    worker,
                    socket.gethostname(),
                    os.getpid(),
                    json.dumps(list(queues)),
                    json.dumps(graphs, sort_keys=True),
                    concurrency,
                    now,
                    now,
                ],
            )

    def beat(
        self,
        worker: str,
        ttl: float,
        state: str | None = None,
        holding: Sequence[str] | None = None,
    ) -> None:
        """The worker's heartbeat: its row, and its claims on ``holding`` (the runs it is
        executing; None: all its claims). A claim it no longer executes (its execution
        failed and the store could not be told, e.g. the server restarting) is not
        renewed, so it expires and the run is claimed again."""
        now = time.time()
        with self.store.write() as c:
            c.execute(
                self._stmt(
                    'UPDATE {workers} SET "heartbeat_at" = ?, "state" = coalesce(?, "state") '
                    'WHERE "id" = ?'
                ),
                [now, state, worker],
            )
            only, params = "", []
            if holding is not None:
                among, params = self._among('"run_id"', holding)
                only = " AND " + among
            if holding is None or holding:
                c.execute(
                    self._stmt('UPDATE {queue} SET "claimed_until" = ? WHERE "worker" = ?' + only),
                    [now + ttl, worker, *params],
                )

    def workers(self) -> list[WorkerInfo]:
        rows = self.store._read(self._stmt(self._WORKERS))
        return [
            WorkerInfo(
                id=str(r[0]),
                host=str(r[1]),
                pid=int(r[2]),
                queues=list(json.loads(r[3])),
                graphs=dict(json.loads(r[4])),
                concurrency=int(r[5]),
                state=str(r[6]),
                started_at=float(r[7]),
                heartbeat_at=float(r[8]),
                holding=self._holding(r[9]),
            )
            for r in rows
        ]

    def queued(self, queue: str | None = None) -> list[QueuedRun]:
        rows = self.store._read(
            self._stmt(
                'SELECT "run_id", "queue", "graph", "attempts", "max_attempts", "worker", '
                '"claimed_until", "available_at", "reasons" FROM {queue} '
                'WHERE CAST(? AS TEXT) IS NULL OR "queue" = ? ORDER BY "available_at", "run_id"'
            ),
            [queue, queue],
        )
        return [
            QueuedRun(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                int(r[3]),
                int(r[4]),
                r[5],
                r[6],
                float(r[7]),
                _reason_list(r[8]),
            )
            for r in rows
        ]

    def sweep(self) -> int:
        """Delete queue rows whose run stopped outside the fleet (cancelled, completed by a
        direct ``resume``) or was deleted; returns how many."""
        among, params = self._among('r."status"', CLAIMABLE)
        with self.store.write() as c:
            cur = c.execute(
                self._stmt(
                    'DELETE FROM {queue} WHERE ("worker" IS NULL OR "claimed_until" < ?) '
                    'AND NOT EXISTS (SELECT 1 FROM {runs} r WHERE r."id" = {queue}."run_id" '
                    "AND " + among + ")"
                ),
                [time.time(), *params],
            )
            return int(cur.rowcount or 0)
