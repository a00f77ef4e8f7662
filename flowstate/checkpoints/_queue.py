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

import time
from collections.abc import Sequence
from typing import Any

from flowstate.errors import QueueUnavailable

from ._flow import FlowControl
from ._postgres_schema import FLEET_CHANNEL, fleet_channel
from ._queue_base import Claim, QueuedRun, SQLQueue, WorkerInfo, in_memory_reason

__all__ = ["Claim", "QueuedRun", "RunQueue", "WorkerInfo"]


class RunQueue(SQLQueue):
    """The queue of a ``PostgresStore`` schema (several machines) or of an ``SQLiteStore``
    file (several processes on one machine: ``RunQueue(sqlite_store)`` is a
    ``SQLiteRunQueue``, see ``_sqlite_queue``). Every operation is one transaction on the
    store's connection (``store.write()``), so enqueueing a new run creates its rows and
    its queue row together or not at all; those written once for both are in
    ``_queue_base``."""

    _GREATEST = "greatest"
    _LOCK_ROW = " FOR UPDATE"
    _INSERT_WORKER = "INSERT"
    _DIED = "claim and lease expired"
    _WORKERS = (
        'SELECT w."id", w."host", w."pid", w."queues", w."graphs", w."concurrency", '
        'w."state", w."started_at", w."heartbeat_at", '
        'coalesce(array_agg(q."run_id" ORDER BY q."run_id") '
        'FILTER (WHERE q."run_id" IS NOT NULL), ARRAY[]::text[]) '
        'FROM {workers} w LEFT JOIN {queue} q ON q."worker" = w."id" '
        'GROUP BY w."id" ORDER BY w."started_at", w."id"'
    )

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
        self.channel = fleet_channel(store.schema)
        """The LISTEN/NOTIFY channel: ``work:<run_id>`` and ``signal:<kind>:<run_id>``."""

    def _among(self, column: str, items: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(items)]

    def _holding(self, value: Any) -> list[str]:
        return [str(x) for x in value]

    def listener(self) -> Any:
        """A dedicated connection listening on the fleet's channel
        (``store.listen(FLEET_CHANNEL)``): ``work:<run_id>`` and ``signal:<kind>:<run_id>``
        notices."""
        return self.store.listen(FLEET_CHANNEL)

    def _q(self, template: str) -> Any:
        return self.store._q(template)

    def _notify(self, c: Any, payload: str) -> None:
        c.execute("SELECT pg_notify(%s, %s)", [self.channel, payload])

    # -- claiming ----------------------------------------------------------------------

    _PICK = (
        'FROM {queue} q JOIN {runs} r ON r."id" = q."run_id" '
        'WHERE q."queue" = ANY(%(queues)s) AND q."graph" = ANY(%(graphs)s) '
        'AND NOT (q."run_id" = ANY(%(exclude)s)) '
        'AND r."status" = ANY(%(statuses)s) '
    )
    _DUE = (
        'AND q."available_at" <= %(now)s '
        'AND (q."worker" IS NULL OR q."claimed_until" < %(now)s) '
        'AND (r."owner" IS NULL OR r."lease_until" IS NULL OR r."lease_until" < %(now)s) '
    )

    def _claim(
        self, worker: str, n: int, ttl: float, alive: Any, pick: dict[str, list[str]]
    ) -> list[Claim]:
        now = time.time()
        params = {**pick, "now": now, "worker": worker, "until": now + ttl}
        out: list[Claim] = []
        with self.store.write() as c:
            caps = self.flow.caps(c, pick["queues"])
            free = [q for q in pick["queues"] if q not in caps]
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
        for row in rows:
            claim = self._claimed(c, *row)
            if claim is not None:
                out.append(claim)
        return out

    def _next_due(self, pick: dict[str, list[str]]) -> float | None:
        rows = self.store._read(
            self._q(
                'SELECT min(greatest(q."available_at", coalesce(q."claimed_until", 0), '
                'coalesce(r."lease_until", 0))) ' + self._PICK
            ),
            pick,  # psycopg takes named parameters as a mapping
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])
