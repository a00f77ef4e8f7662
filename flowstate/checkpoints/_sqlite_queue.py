"""The fleet's queue on one SQLite file: several worker processes on one machine share
it, as workers on several machines share a PostgreSQL schema (``_queue``).

The tables are PostgreSQL's (``queue``, ``workers``, ``flow_limits``; migration
``m701_queue``) and so are the rules: the run row is the one truth about who executes a
run (lease, epoch, a fence on every commit), the queue row says only that a worker
should pick the run up, each claim counts an attempt, a run past ``max_attempts`` is
buried as ``dead`` with its reasons. What differs is how claimers are kept apart and
woken:

- **Claims** run inside ``BEGIN IMMEDIATE``: SQLite's one write lock serialises the
  claimers of every process, so the rows a claim reads cannot be claimed by another
  between its read and its update, and no ``SKIP LOCKED`` is needed. A claim first looks
  for claimable rows with a plain read (no lock), so an idle worker's poll never takes
  the write lock.
- **Dead workers** are on this host by construction, so besides expiry a claim (and the
  lease behind it) is free at once when its holder's process is gone (``alive``, the
  engine's pid check): a ``kill -9``-ed worker's runs are taken over at the next poll,
  not when the lease runs out. A frozen (SIGSTOP-ped) worker is alive: its runs wait for
  the lease, and its commits are refused afterwards by the fence, as on PostgreSQL.
- **Waking**: no NOTIFY; ``changed()`` reads ``PRAGMA data_version``, which moves only
  when another connection committed, so a worker polls it every few tens of
  milliseconds at the cost of a read of shared memory, and queries only after a change.
- **Flow control** (``SQLiteFlowControl``): the same limits; counting claims and
  refilling a token bucket happen under the write lock, on this machine's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from flowstate.errors import QueueUnavailable

from ._flow import FlowControl, _burst, _key, _max_running
from ._queue import RunQueue
from ._queue_base import Claim, in_memory_reason

__all__ = ["SQLiteFlowControl", "SQLiteRunQueue"]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class SQLiteRunQueue(RunQueue):
    """The run queue of an ``SQLiteStore`` file (``RunQueue(sqlite_store)`` returns one)."""

    polls = True
    wake_interval = 0.05
    """Seconds between two ``changed()`` polls of a worker."""

    _GREATEST = "max"
    _LOCK_ROW = ""  # the write lock of BEGIN IMMEDIATE serialises every writer
    _INSERT_WORKER = "INSERT OR REPLACE"
    _DIED = "claim and lease expired, or its process ended"
    _WORKERS = (
        'SELECT w."id", w."host", w."pid", w."queues", w."graphs", w."concurrency", '
        'w."state", w."started_at", w."heartbeat_at", '
        '(SELECT group_concat(q."run_id", char(10)) FROM {queue} q WHERE q."worker" = w."id") '
        'FROM {workers} w ORDER BY w."started_at", w."id"'
    )

    def __init__(self, store: Any) -> None:
        reason = in_memory_reason(store)
        if reason is not None:
            raise QueueUnavailable(store, reason)
        self.store = store
        self.flow: FlowControl = SQLiteFlowControl(store)
        self.channel = ""
        """No LISTEN/NOTIFY on SQLite: workers poll ``changed()``."""
        self._version: int | None = None

    def _among(self, column: str, items: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({_marks(items)})", list(items)

    def _holding(self, value: Any) -> list[str]:
        return sorted(str(value).split("\n")) if value else []

    def _notify(self, c: Any, payload: str) -> None:
        """Nothing to send: the commit itself moves every other connection's
        ``data_version``, which is what workers poll."""

    def changed(self) -> bool:
        """Whether another connection committed to the file since the last call (the
        first call says True)."""
        version = int(self.store._read("PRAGMA data_version")[0][0])
        seen, self._version = self._version, version
        return seen != version

    # -- claiming ----------------------------------------------------------------------

    def _dead(self, read: Callable[..., list[Any]], now: float, alive: Any) -> list[str]:
        """Holders (workers, run owners) of unexpired claims and leases of queued runs
        whose process is gone."""
        if alive is None:
            return []
        rows = read(
            'SELECT q."worker", r."owner" FROM "queue" q JOIN "runs" r ON r."id" = q."run_id" '
            'WHERE (q."worker" IS NOT NULL AND q."claimed_until" >= ?) '
            'OR (r."owner" IS NOT NULL AND r."lease_until" >= ?)',
            [now, now],
        )
        names = {n for row in rows for n in row if n}
        return sorted(n for n in names if alive(n) is False)

    def _pick(
        self,
        read: Callable[..., list[Any]],
        *,
        queues: Sequence[str],
        graphs: Sequence[str],
        exclude: Sequence[str],
        statuses: Sequence[str],
        dead: Sequence[str],
        now: float,
        n: int,
    ) -> list[Any]:
        """Claimable rows, best first: (run_id, previous worker, run status, head step)."""
        return read(
            'SELECT q."run_id", q."worker", r."status", r."head_step" '
            'FROM "queue" q JOIN "runs" r ON r."id" = q."run_id" '
            f'WHERE q."queue" IN ({_marks(queues)}) AND q."graph" IN ({_marks(graphs)}) '
            f'AND q."run_id" NOT IN ({_marks(exclude)}) '
            f'AND r."status" IN ({_marks(statuses)}) AND q."available_at" <= ? '
            'AND (q."worker" IS NULL OR q."claimed_until" < ? '
            f'OR q."worker" IN ({_marks(dead)})) '
            'AND (r."owner" IS NULL OR r."lease_until" IS NULL OR r."lease_until" < ? '
            f'OR r."owner" IN ({_marks(dead)}) OR q."worker" IN ({_marks(dead)})) '
            'ORDER BY q."priority" DESC, q."available_at", q."run_id" LIMIT ?',
            [
                *queues,
                *graphs,
                *exclude,
                *statuses,
                now,
                now,
                *dead,
                now,
                *dead,
                *dead,
                n,
            ],
        )

    def _claim(
        self, worker: str, n: int, ttl: float, alive: Any, pick: dict[str, list[str]]
    ) -> list[Claim]:
        queues = pick["queues"]
        # a plain read first: an idle poll never takes the write lock
        now = time.time()
        dead = self._dead(self.store._read, now, alive)
        if not self._pick(self.store._read, **pick, dead=dead, now=now, n=1):
            return []
        out: list[Claim] = []
        with self.store.write() as c:

            def read(sql: str, params: Sequence[Any] = ()) -> list[Any]:
                return c.execute(sql, params).fetchall()

            now = time.time()
            dead = self._dead(read, now, alive)
            caps = self.flow.caps(c, queues)
            free = [q for q in queues if q not in caps]
            rows = []
            if free:
                rows += self._pick(read, **{**pick, "queues": free}, dead=dead, now=now, n=n)
            for q, cap in caps.items():  # concurrency-limited queues, one at a time
                room = min(n - len(rows), cap - self._held(c, q, now, dead))
                if room > 0:
                    rows += self._pick(read, **{**pick, "queues": [q]}, dead=dead, now=now, n=room)
            for run_id, prev, status, step in rows:
                claim = self._take(c, worker, run_id, prev, status, step, now + ttl)
                if claim is not None:
                    out.append(claim)
        return out

    def _held(self, c: Any, queue: str, now: float, dead: Sequence[str]) -> int:
        """Live claims on ``queue`` (a dead worker's stop counting at once)."""
        row = c.execute(
            'SELECT count(*) FROM "queue" WHERE "queue" = ? AND "worker" IS NOT NULL '
            f'AND "claimed_until" >= ? AND "worker" NOT IN ({_marks(dead)})',
            [queue, now, *dead],
        ).fetchone()
        return int(row[0])

    def _take(
        self, c: Any, worker: str, run_id: str, prev: Any, status: str, step: Any, until: float
    ) -> Claim | None:
        row = c.execute(
            'UPDATE "queue" SET "worker" = ?, "claimed_until" = ?, "attempts" = "attempts" + 1 '
            'WHERE "run_id" = ? RETURNING "graph", "queue", "attempts", "max_attempts", '
            '"reasons"',
            [worker, until, run_id],
        ).fetchone()
        graph, queue, attempts, max_attempts, reasons = row
        return self._claimed(
            c, run_id, graph, queue, attempts, max_attempts, reasons, prev, status, step
        )

    def _next_due(self, pick: dict[str, list[str]]) -> float | None:
        queues, graphs = pick["queues"], pick["graphs"]
        exclude, statuses = pick["exclude"], pick["statuses"]
        rows = self.store._read(
            'SELECT min(max(q."available_at", coalesce(q."claimed_until", 0), '
            'coalesce(r."lease_until", 0))) FROM "queue" q JOIN "runs" r ON r."id" = q."run_id" '
            f'WHERE q."queue" IN ({_marks(queues)}) AND q."graph" IN ({_marks(graphs)}) '
            f'AND q."run_id" NOT IN ({_marks(exclude)}) AND r."status" IN ({_marks(statuses)})',
            [*queues, *graphs, *exclude, *statuses],
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])


class SQLiteFlowControl(FlowControl):
    """The ``flow_limits`` of an SQLite file: ``FlowControl``'s limits, kept under the
    file's write lock (which every claim and every take holds) instead of advisory locks,
    on this machine's clock (every process sharing the file shares the machine)."""

    def limit_queue(self, queue: str, max_running: int | None) -> None:
        max_running = _max_running(max_running)
        with self.store.write() as c:
            c.execute(
                'INSERT INTO "flow_limits" ("key", "max_running") VALUES (?, ?) '
                'ON CONFLICT ("key") DO UPDATE SET "max_running" = excluded."max_running"',
                [_key("queue", queue), max_running],
            )

    def caps(self, c: Any, queues: Sequence[str]) -> dict[str, int]:
        keys = [f"queue:{q}" for q in queues]
        rows = c.execute(
            'SELECT "key", "max_running" FROM "flow_limits" '
            f'WHERE "key" IN ({_marks(keys)}) AND "max_running" IS NOT NULL',
            keys,
        ).fetchall()
        return {str(k).split(":", 1)[1]: int(m) for k, m in rows}

    def room(self, c: Any, queue: str, cap: int, now: float) -> int:
        row = c.execute(
            'SELECT count(*) FROM "queue" WHERE "queue" = ? AND "worker" IS NOT NULL '
            'AND "claimed_until" >= ?',
            [queue, now],
        ).fetchone()
        return cap - int(row[0])

    def limit_rate(self, key: str, *, per_minute: float, burst: float | None = None) -> None:
        burst = _burst(per_minute, burst)
        with self.store.write() as c:
            c.execute(
                'INSERT INTO "flow_limits" ("key", "per_second", "burst", "tokens", '
                '"updated_at") VALUES (?, ?, ?, ?, ?) '
                'ON CONFLICT ("key") DO UPDATE SET "per_second" = excluded."per_second", '
                '"burst" = excluded."burst", '
                '"tokens" = min(coalesce("flow_limits"."tokens", excluded."burst"), '
                'excluded."burst"), "updated_at" = coalesce("flow_limits"."updated_at", '
                'excluded."updated_at")',
                [_key("rate", key), per_minute / 60, burst, burst, time.time()],
            )

    def take(self, key: str, n: float = 1.0) -> float:
        k = _key("rate", key)
        with self.store.write() as c:
            row = c.execute(
                'SELECT "per_second", "burst", "tokens", "updated_at" FROM "flow_limits" '
                'WHERE "key" = ? AND "per_second" IS NOT NULL',
                [k],
            ).fetchone()
            if row is None:
                return 0.0
            per_second, burst = float(row[0]), float(row[1])
            now = time.time()
            # a clock stepped back refills nothing (and takes nothing away)
            tokens = min(burst, float(row[2]) + max(0.0, now - float(row[3])) * per_second)
            if tokens >= n:
                c.execute(
                    'UPDATE "flow_limits" SET "tokens" = ?, "updated_at" = ? WHERE "key" = ?',
                    [tokens - n, now, k],
                )
                return 0.0
        if n > burst:
            raise ValueError(f"{n} tokens can never be taken from '{key}' (burst {burst})")
        return max(0.001, (n - tokens) / per_second)
