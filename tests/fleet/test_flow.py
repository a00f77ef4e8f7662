"""Flow control in the database, one contract suite over every queue backend (a
PostgreSQL schema, an SQLite file): a queue's concurrency limit holds across workers, and
a rate limit (token bucket row) is shared by every session, also through the LLM layer."""

from __future__ import annotations

import asyncio
import time

import pytest

from flowstate.checkpoints import RateLimit, RunQueue
from flowstate.engine import Worker
from flowstate.llm import RateLimitedLLM, ScriptedLLM, user
from tests.fleet import fleet_graphs as fg
from tests.fleet.conftest import AnyFleet


def test_a_queue_limit_holds_across_workers(any_fleet: AnyFleet) -> None:
    store = any_fleet.store()
    app = fg.chain(2, 0.15).bind(store)
    RunQueue(store).flow.limit_queue("narrow", 2)
    ids = [app.enqueue({}, queue="narrow").id for _ in range(8)]
    other = [app.enqueue({}).id for _ in range(3)]  # the default queue has no limit
    peak = 0

    async def main() -> None:
        nonlocal peak
        workers = [
            Worker(
                any_fleet.store(),
                {"chain": fg.chain(2, 0.15)},
                concurrency=4,
                queues=["narrow", "default"],
                lease_ttl=5,
                poll=0.1,
            )
            for _ in range(2)
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        deadline = time.monotonic() + 60
        while not all(app.get_run(i).status == "completed" for i in ids + other):
            assert time.monotonic() < deadline, "the limited queue did not drain"
            held = [r for r in RunQueue(store).queued("narrow") if r.worker is not None]
            peak = max(peak, len(held))
            await asyncio.sleep(0.01)
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert peak == 2, f"at most 2 runs of 'narrow' at once, saw {peak}"
    assert RunQueue(store).flow.limits() == [
        {"key": "queue:narrow", "max_running": 2, "per_second": None, "burst": None}
    ]
    with pytest.raises(ValueError, match="max_running"):
        RunQueue(store).flow.limit_queue("narrow", 0)


def test_a_rate_limit_is_shared_by_every_session(any_fleet: AnyFleet) -> None:
    a = RateLimit(any_fleet.store(), "api-key-1", per_minute=600, burst=2)  # 10 a second
    b = RateLimit(any_fleet.store(), "api-key-1")
    free = RateLimit(any_fleet.store(), "no-limit-here")

    async def main() -> float:
        assert await free.acquire() == 0.0
        t0 = time.monotonic()

        async def take(limit: RateLimit) -> None:
            for _ in range(6):
                await limit.acquire()

        await asyncio.gather(take(a), take(b))
        return time.monotonic() - t0

    took = asyncio.run(main())
    # 12 takes: 2 from the burst, 10 at 10 a second -> at least ~1 s for both together
    assert 0.9 <= took < 10, took
    assert a.flow.limits()[0]["key"] == "rate:api-key-1"
    with pytest.raises(ValueError, match="can never be taken"):
        a.flow.take("api-key-1", 3)


def test_rate_limited_llm_waits_for_the_fleet_limit(any_fleet: AnyFleet) -> None:
    limit = RateLimit(any_fleet.store(), "llm", per_minute=120, burst=1)  # 2 a second
    llm = RateLimitedLLM(ScriptedLLM(["a", "b", "c"], model="m1"), limit)
    assert llm.model == "m1"

    async def main() -> list[str]:
        return [(await llm.complete([user("hi")])).text for _ in range(3)]

    t0 = time.monotonic()
    assert asyncio.run(main()) == ["a", "b", "c"]
    assert time.monotonic() - t0 >= 0.9
    assert llm.waited >= 0.9
    with pytest.raises(TypeError, match="acquire"):
        RateLimitedLLM(ScriptedLLM(["a"]), object())  # type: ignore[arg-type]
