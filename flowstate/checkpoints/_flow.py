"""Flow control across a fleet, enforced in the database (table ``flow_limits``), so every
worker on every machine obeys one limit together.

- **Concurrency per queue** (row ``queue:<name>``, ``max_running``): claims on a limited
  queue are serialised by a transaction-level advisory lock keyed on the queue; under it
  the claims held (unexpired) are counted and at most the room left is claimed. A dead
  worker's claims stop counting when they expire.
- **Rate per key** (row ``rate:<key>``, a token bucket: ``per_second``, ``burst``,
  ``tokens``, ``updated_at`` on the database's clock): ``take`` refills and takes in one
  ``UPDATE``, or says how long until enough tokens are there. ``RateLimit`` is the
  awaitable form, e.g. for ``flowstate.llm.RateLimitedLLM`` ("50 LLM calls a minute per
  API key", shared by the fleet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

__all__ = ["FlowControl", "RateLimit"]

_NOW = "extract(epoch from clock_timestamp())"
_REFILLED = f'least("burst", "tokens" + ({_NOW} - "updated_at") * "per_second")'


def _key(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError(f"a {kind} name must be a non-empty string of at most 200 characters")
    return f"{kind}:{name}"


def _max_running(max_running: int | None) -> int | None:
    """``max_running`` of ``limit_queue``, checked: an integer >= 1, or None (no limit)."""
    if max_running is not None and (not isinstance(max_running, int) or max_running < 1):
        raise ValueError(f"max_running must be an integer >= 1 or None, not {max_running!r}")
    return max_running


def _burst(per_minute: float, burst: float | None) -> float:
    """The bucket of ``limit_rate``, checked: ``burst``, by default one second's worth of
    ``per_minute`` (at least 1)."""
    if not per_minute > 0:
        raise ValueError(f"per_minute must be positive, not {per_minute!r}")
    burst = burst if burst is not None else max(1.0, per_minute / 60)
    if not burst >= 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")
    return burst


class FlowControl:
    """The ``flow_limits`` of a ``PostgresStore`` schema."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _q(self, template: str) -> Any:
        return self.store._q(template)

    # -- concurrency per queue -------------------------------------------------------------

    def limit_queue(self, queue: str, max_running: int | None) -> None:
        """At most ``max_running`` runs of ``queue`` claimed at once, fleet-wide (None:
        no limit)."""
        max_running = _max_running(max_running)
        with self.store.write() as c:
            c.execute(
                self._q(
                    'INSERT INTO {flow_limits} ("key", "max_running") VALUES (%s, %s) '
                    'ON CONFLICT ("key") DO UPDATE SET "max_running" = EXCLUDED."max_running"'
                ),
                [_key("queue", queue), max_running],
            )

    def caps(self, c: Any, queues: Sequence[str]) -> dict[str, int]:
        """Inside a claim: the concurrency limits of ``queues`` that have one."""
        rows = c.execute(
            self._q(
                'SELECT "key", "max_running" FROM {flow_limits} '
                'WHERE "key" = ANY(%s) AND "max_running" IS NOT NULL'
            ),
            [[f"queue:{q}" for q in queues]],
        ).fetchall()
        return {str(k).split(":", 1)[1]: int(m) for k, m in rows}

    def room(self, c: Any, queue: str, cap: int, now: float) -> int:
        """Inside a claim: lock the queue's claims until COMMIT and say how many more it
        may have claimed."""
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s::text, 0))",
            [f"flowstate.queue:{self.store.schema}:{queue}"],
        )
        row = c.execute(
            self._q(
                'SELECT count(*) FROM {queue} WHERE "queue" = %s AND "worker" IS NOT NULL '
                'AND "claimed_until" >= %s'
            ),
            [queue, now],
        ).fetchone()
        return cap - int(row[0])

    # -- rate per key ------------------------------------------------------------------------

    def limit_rate(self, key: str, *, per_minute: float, burst: float | None = None) -> None:
        """At most ``per_minute`` takes a minute on ``key``, fleet-wide, with bursts of up
        to ``burst`` (default: one second's worth, at least 1)."""
        burst = _burst(per_minute, burst)
        with self.store.write() as c:
            c.execute(
                self._q(
                    'INSERT INTO {flow_limits} ("key", "per_second", "burst", "tokens", '
                    f'"updated_at") VALUES (%s, %s, %s, %s, {_NOW}) '
                    'ON CONFLICT ("key") DO UPDATE SET "per_second" = EXCLUDED."per_second", '
                    '"burst" = EXCLUDED."burst", '
                    '"tokens" = least({flow_limits}."tokens", EXCLUDED."burst")'
                ),
                [_key("rate", key), per_minute / 60, burst, burst],
            )

    def take(self, key: str, n: float = 1.0) -> float:
        """Take ``n`` tokens of ``key``'s bucket: 0.0 when taken (or ``key`` has no
        limit), else the seconds until there will be enough (nothing taken)."""
        k = _key("rate", key)
        with self.store.write() as c:
            got = c.execute(
                self._q(
                    f'UPDATE {{flow_limits}} SET "tokens" = {_REFILLED} - %s, '
                    f'"updated_at" = {_NOW} WHERE "key" = %s AND "per_second" IS NOT NULL '
                    f"AND {_REFILLED} >= %s RETURNING 1"
                ),
                [n, k, n],
            ).fetchone()
            if got is not None:
                return 0.0
            row = c.execute(
                self._q(
                    f'SELECT "per_second", "burst", {_REFILLED} FROM {{flow_limits}} '
                    'WHERE "key" = %s AND "per_second" IS NOT NULL'
                ),
                [k],
            ).fetchone()
        if row is None:
            return 0.0
        per_second, burst, tokens = float(row[0]), float(row[1]), float(row[2])
        if n > burst:
            raise ValueError(f"{n} tokens can never be taken from '{key}' (burst {burst})")
        return max(0.001, (n - tokens) / per_second)

    def limits(self) -> list[dict[str, Any]]:
        """Every limit row, for ``flowstate limits`` and tests."""
        rows = self.store._read(
            self.store._stmt(
                'SELECT "key", "max_running", "per_second", "burst" FROM {flow_limits} '
                'ORDER BY "key"'
            )
        )
        return [
            {"key": str(r[0]), "max_running": r[1], "per_second": r[2], "burst": r[3]} for r in rows
        ]


class RateLimit:
    """A fleet-wide rate limit on ``key`` of a PostgreSQL store: ``await acquire()``
    before each call it limits. With ``per_minute``, the limit is (re)set on creation."""

    def __init__(
        self,
        store: Any,
        key: str,
        *,
        per_minute: float | None = None,
        burst: float | None = None,
    ) -> None:
        from ._queue import RunQueue

        self.flow = RunQueue(store).flow  # QueueUnavailable on a store without one
        self.key = key
        if per_minute is not None:
            self.flow.limit_rate(key, per_minute=per_minute, burst=burst)

    def __repr__(self) -> str:
        return f"RateLimit({self.key!r})"

    async def acquire(self, n: float = 1.0) -> float:
        """Wait until ``n`` tokens are taken; returns the seconds waited."""
        waited = 0.0
        while True:
            wait = self.flow.take(self.key, n)
            if wait <= 0:
                return waited
            await asyncio.sleep(wait)
            waited += wait
