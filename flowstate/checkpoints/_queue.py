"""The fleet's queue on PostgreSQL: runs waiting for a worker, claimed with
``FOR UPDATE SKIP LOCKED``; the workers that claim them; dead letters.

The run row stays the one truth about who executes a run: its lease (owner, epoch,
expiry) and the fence on every commit (``_sql_leases``). The queue row (table
``queue``, migration ``m501_queue``) says only that a worker should pick the run up:

- A worker claims a row when it is due (``available_at``), nobody claims it
  (``worker`` unset or its ``claimed_until`` passed) and the run's lease is free or
  expired. The claim takes the row with ``FOR UPDATE OF q SKIP LOCKED``, so concurrent
  workers never wait on each other and never pick the same row; then the worker takes
  the run's lease as ``resume`` does, and from there every commit is fenced as today.
- Each claim counts an attempt. A claim that finds the run ``running`` under a claim that
  expired means the last worker died holding it: that is recorded as a reason. Past
  ``max_attempts`` the run is buried: status ``dead``, the reasons in its ``error``, the
  queue row gone; ``requeue`` puts it back by hand.
- The worker renews ``claimed_until`` of everything it holds with its own heartbeat (one
  statement), and deletes the row when the run stops (completed, paused, cancelled).

New work and cancel requests are announced with ``NOTIFY`` on ``fleet_channel(schema)``
(delivered at COMMIT), so listening workers wake at once; polling is the fallback.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowstate.errors import QueueUnavailable, RunOwned, RunStateError

from ._common import STEP_COLS, run_exists_error, run_values, values
from ._flow import FlowControl
from ._postgres_schema import FLEET_CHANNEL, fleet_channel
from ._records import RunRecord, StepRecord
from ._sql_writes import _RUN_INSERT

__all__ = ["Claim", "QueuedRun", "RunQueue", "WorkerInfo"]

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
    try:
        got = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return [f"unreadable reasons: {text!r}"]
    return [str(x) for x in got] if isinstance(got, list) else []


class RunQueue:
    """The queue of a ``PostgresStore`` schema (several machines) or of an ``SQLiteStore``
    file (several processes on one machine: ``RunQueue(sqlite_store)`` is a
    ``SQLiteRunQueue``, see ``_sqlite_queue``). Every operation is one transaction on the
    store's connection (``store.write()``), so enqueueing a new run creates its rows and
    its queue row together or not at all."""

    def __new__(cls, store: Any) -> RunQueue:
        if cls is RunQueue:
            from ._sqlite import SQLiteStore

            if isinstance(store, SQLiteStore):
                from ._sqlite_queue import SQLiteRunQueue

                return object.__new__(SQLiteRunQueue)
        return object.__new__(cls)

    def __init__(self, store: Any) -> None:
        try:
            from ._postgres import PostgresStore
        except ImportError:  # psycopg (the postgres extra) is not installed
            raise QueueUnavailable(store) from None
        if not isinstance(store, PostgresStore):
            raise QueueUnavailable(store, in_memory_reason(store))
        self.store = store
        self.flow = FlowControl(store)
        """Concurrency limits per queue and rate limits per key (``flow_limits``)."""
        self.channel = fleet_channel(store.schema)
        """The LISTEN/NOTIFY channel: ``work:<run_id>`` and ``signal:<kind>:<run_id>``."""

    polls = False
    """Whether workers must poll for changes (``changed()``) instead of listening."""

    def listener(self) -> Any:
        """A dedicated connection listening on the fleet's channel
        (``store.listen(FLEET_CHANNEL)``): ``work:<run_id>`` and ``signal:<kind>:<run_id>``
        notices."""
        return self.store.listen(FLEET_CHANNEL)

    def _q(self, template: str) -> Any:
        return self.store._q(template)

    def _notify(self, c: Any, payload: str) -> None:
        c.execute("SELECT pg_notify(%s, %s)", [self.channel, payload])

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
            self._q(
                'INSERT INTO {queue} ("run_id", "queue", "graph", "priority", "available_at", '
                '"attempts", "max_attempts", "created_at") VALUES (%s, %s, %s, %s, %s, 0, %s, %s) '
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

    _PICK = (
        'FROM {queue} q JOIN {runs} r ON r."id" = q."run_id" '
        'WHERE q."queue" = ANY(%(queues)s) AND q."graph" = ANY(%(graphs)s) '
        'AND NOT (q."run_id" = ANY(%(exclude)s)) '
        'AND r."status" = ANY(%(claimable)s) '
    )
    _DUE = (
        'AND q."available_at" <= %(now)s '
        'AND (q."worker" IS NULL OR q."claimed_until" < %(now)s) '
        'AND (r."owner" IS NULL OR r."lease_until" IS NULL OR r."lease_until" < %(now)s) '
    )

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
        (used on SQLite, whose workers share one host; ignored here)."""
        if n <= 0:
            return []
        now = time.time()
        params = {
            "graphs": list(graphs),
            "exclude": list(exclude),
            # orphans: runs left 'running' by a worker that died or handed them back
            "claimable": ["running"] if orphans else list(CLAIMABLE),
            "now": now,
            "worker": worker,
            "until": now + ttl,
        }
        out: list[Claim] = []
        with self.store.write() as c:
            caps = self.flow.caps(c, queues)
            free = [q for q in queues if q not in caps]
            if free:
                out += self._claim_in(c, {**params, "queues": free, "n": n})
            for q, cap in caps.items():  # concurrency-limited queues, one at a time
                room = min(n - len(out), self.flow.room(c, q, cap, now))
                if room > 0:
                    out += self._claim_in(c, {**params, "queues": [q], "n": room})
        return out

    def _claim_in(self, c: Any, params: dict[str, Any]) -> list[Claim]:
        rows = c.execute(
            self._q(
                'WITH picked AS (SELECT q."run_id", q."worker" AS prev, r."status", '
                'r."head_step" '
                + self._PICK
                + self._DUE
                + 'ORDER BY q."priority" DESC, q."available_at", q."run_id" LIMIT %(n)s '
                "FOR UPDATE OF q SKIP LOCKED) "
                'UPDATE {queue} q SET "worker" = %(worker)s, "claimed_until" = %(until)s, '
                '"attempts" = q."attempts" + 1 FROM picked WHERE q."run_id" = picked."run_id" '
                'RETURNING q."run_id", q."graph", q."queue", q."attempts", q."max_attempts", '
                'q."reasons", picked."prev", picked."status", picked."head_step"'
            ),
            params,
        ).fetchall()
        out = []
        for run_id, graph, queue, attempts, max_attempts, reasons, prev, status, step in rows:
            died = prev is not None and status == "running"
            reasons = _reason_list(reasons)
            if died:
                reasons.append(
                    f"attempt {attempts - 1}: worker {prev} stopped holding the run "
                    f"(claim and lease expired) at step {step}"
                )
                c.execute(
                    self._q('UPDATE {queue} SET "reasons" = %s WHERE "run_id" = %s'),
                    [json.dumps(reasons), run_id],
                )
            if attempts > max_attempts:
                self._bury(c, run_id, max_attempts, reasons)
                continue
            out.append(Claim(run_id, graph, queue, attempts, max_attempts, died))
        return out

    def _bury(self, c: Any, run_id: str, max_attempts: int, reasons: list[str]) -> None:
        error = f"dead letter after {max_attempts} attempts: " + "; ".join(reasons[-max_attempts:])
        self.store._update_run(c, run_id, {"status": "dead", "error": error})
        c.execute(self._q('DELETE FROM {queue} WHERE "run_id" = %s'), [run_id])

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
        params: Any = {  # psycopg takes named parameters as a mapping
            "queues": list(queues),
            "graphs": list(graphs),
            "exclude": list(exclude),
            "claimable": ["running"] if orphans else list(CLAIMABLE),
        }
        rows = self.store._read(
            self._q(
                'SELECT min(greatest(q."available_at", coalesce(q."claimed_until", 0), '
                'coalesce(r."lease_until", 0))) ' + self._PICK
            ),
            params,
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    # -- after a claim -----------------------------------------------------------------

    def done(self, run_id: str, worker: str) -> None:
        """The run stopped (completed, paused, cancelled): its queue row goes."""
        with self.store.write() as c:
            c.execute(
                self._q('DELETE FROM {queue} WHERE "run_id" = %s AND "worker" = %s'),
                [run_id, worker],
            )

    def hand_back(self, run_id: str, worker: str, *, reason: str | None = None) -> None:
        """Give a claim up without counting it as an attempt (a drain, a graph this worker
        cannot run, a run another process holds)."""
        with self.store.write() as c:
            c.execute(
                self._q(
                    'UPDATE {queue} SET "worker" = NULL, "claimed_until" = NULL, '
                    '"attempts" = greatest("attempts" - 1, 0) '
                    'WHERE "run_id" = %s AND "worker" = %s'
                ),
                [run_id, worker],
            )
            self._notify(c, f"work:{run_id}")

    def failed(self, run_id: str, worker: str, reason: str, *, backoff: float) -> str:
        """The run failed (its node's retries exhausted): retried after ``backoff`` seconds
        while attempts remain, else buried. Returns ``"retry"`` or ``"dead"``."""
        with self.store.write() as c:
            row = c.execute(
                self._q(
                    'SELECT "attempts", "max_attempts", "reasons" FROM {queue} '
                    'WHERE "run_id" = %s AND "worker" = %s FOR UPDATE'
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
                self._q(
                    'UPDATE {queue} SET "worker" = NULL, "claimed_until" = NULL, '
                    '"available_at" = %s, "reasons" = %s WHERE "run_id" = %s'
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
                self._q(
                    'UPDATE {runs} SET "owner" = NULL, "lease_until" = NULL '
                    'WHERE "id" = %s AND "owner" = %s AND "epoch" = %s'
                ),
                [run_id, owner, epoch],
            )

    def cancel_requests(self, run_ids: Sequence[str]) -> list[str]:
        """Which of ``run_ids`` have a pending cancel request."""
        rows = self.store._read(
            self._q(
                'SELECT "run_id" FROM {signals} WHERE "kind" = \'cancel\' AND "run_id" = ANY(%s)'
            ),
            [list(run_ids)],
        )
        return [str(r[0]) for r in rows]

    # -- workers -----------------------------------------------------------------------

    def register(
        self, worker: str, *, queues: Sequence[str], graphs: dict[str, str], concurrency: int
    ) -> None:
        now = time.time()
        with self.store.write() as c:
            # forget workers silent for a day (their claims expired long ago)
            c.execute(self._q('DELETE FROM {workers} WHERE "heartbeat_at" < %s'), [now - 86400])
            c.execute(
                self._q(
                    'INSERT INTO {workers} ("id", "host", "pid", "queues", "graphs", '
                    '"concurrency", "state", "started_at", "heartbeat_at") '
                    "VALUES (%s, %s, %s, %s, %s, %s, 'running', %s, %s)"
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
                self._q(
                    'UPDATE {workers} SET "heartbeat_at" = %s, "state" = coalesce(%s, "state") '
                    'WHERE "id" = %s'
                ),
                [now, state, worker],
            )
            if holding is None:
                c.execute(
                    self._q('UPDATE {queue} SET "claimed_until" = %s WHERE "worker" = %s'),
                    [now + ttl, worker],
                )
            elif holding:
                c.execute(
                    self._q(
                        'UPDATE {queue} SET "claimed_until" = %s WHERE "worker" = %s '
                        'AND "run_id" = ANY(%s)'
                    ),
                    [now + ttl, worker, list(holding)],
                )

    def workers(self) -> list[WorkerInfo]:
        rows = self.store._read(
            self._q(
                'SELECT w."id", w."host", w."pid", w."queues", w."graphs", w."concurrency", '
                'w."state", w."started_at", w."heartbeat_at", '
                'coalesce(array_agg(q."run_id" ORDER BY q."run_id") '
                'FILTER (WHERE q."run_id" IS NOT NULL), ARRAY[]::text[]) '
                'FROM {workers} w LEFT JOIN {queue} q ON q."worker" = w."id" '
                'GROUP BY w."id" ORDER BY w."started_at", w."id"'
            )
        )
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
                holding=[str(x) for x in r[9]],
            )
            for r in rows
        ]

    def queued(self, queue: str | None = None) -> list[QueuedRun]:
        rows = self.store._read(
            self._q(
                'SELECT "run_id", "queue", "graph", "attempts", "max_attempts", "worker", '
                '"claimed_until", "available_at", "reasons" FROM {queue} '
                'WHERE %s::text IS NULL OR "queue" = %s ORDER BY "available_at", "run_id"'
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
        with self.store.write() as c:
            cur = c.execute(
                self._q(
                    'DELETE FROM {queue} q WHERE (q."worker" IS NULL OR q."claimed_until" < %s) '
                    'AND NOT EXISTS (SELECT 1 FROM {runs} r WHERE r."id" = q."run_id" '
                    'AND r."status" = ANY(%s))'
                ),
                [time.time(), list(CLAIMABLE)],
            )
            return int(cur.rowcount or 0)
