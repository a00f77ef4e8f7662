"""Durable timers, interrupt deadlines and schedules on every store backend (SQLite file,
PostgreSQL, in memory), under a ``TestClock``: time moves, nothing sleeps."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder
from flowstate.clock import TestClock, use_clock
from flowstate.engine import TimedOut, add_schedule, fire_schedules, pause_schedule
from flowstate.errors import InputRejected, ScheduleError, ScheduleNotFound, TimerError

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class S(BaseModel):
    log: list[str] = []
    n: int = 0


def _graph(store: Any, node: Any, name: str = "t") -> Any:
    g = GraphBuilder(S, name=name)
    g.add_node("a", node)
    g.add_edge(START, "a")
    g.add_edge("a", END)
    return g.compile(store=store)


def test_a_long_sleep_pauses_until_due_and_a_resume_before_then_does_not_cut_it(store):
    calls: list[str] = []

    async def a(s: S, ctx: Any) -> dict[str, Any]:
        await ctx.effect("before", lambda: calls.append("before"))
        await ctx.sleep(3600)
        return {"log": ["woke"]}

    app = _graph(store, a)

    async def go() -> None:
        with use_clock(TestClock(T0)) as clock:
            r = await app.run({})
            assert r.status == "paused" and "sleeping in 'a'" in (r.reason or "")
            assert store.wake_time(r.run_id) == T0 + 3600
            clock.advance(1000)
            r2 = await app.resume(r.run_id)  # a human resume before the time: still asleep
            assert r2.status == "paused" and store.wake_time(r.run_id) == T0 + 3600
            assert await app.resume_due() == []
            clock.set(T0 + 3599.5)
            assert await app.resume_due() == []
            clock.set(T0 + 3600)
            [done] = await app.resume_due()
            assert done.status == "completed" and done.state.log == ["woke"]
            assert store.wake_time(r.run_id) is None
            assert await app.resume_due() == []  # woken once
            rep = await app.replay(r.run_id)  # replay does not wait (the clock did not move)
            assert rep.identical

    asyncio.run(go())
    assert calls == ["before"]


def test_a_short_sleep_is_awaited_in_process_without_pausing(store):
    async def a(s: S, ctx: Any) -> dict[str, Any]:
        await ctx.sleep(2, hold=5)
        await ctx.sleep_until(datetime.fromtimestamp(T0 + 3, UTC))
        return {"log": ["done"]}

    app = _graph(store, a)

    async def go() -> None:
        with use_clock(TestClock(T0)) as clock:
            task = asyncio.ensure_future(app.run({}))
            for _ in range(400):
                await asyncio.sleep(0.01)
                clock.advance(0.1)
                if task.done():
                    break
            r = await task
            assert r.status == "completed"
            assert clock.now() >= T0 + 3

    asyncio.run(go())


def test_an_interrupt_deadline_answers_with_the_default_or_timed_out(store):
    async def a(s: S, ctx: Any) -> dict[str, Any]:
        first = await ctx.interrupt({"q": "approve?"}, timeout=60, default="no")
        second = await ctx.interrupt({"q": "escalate?"}, timeout=30)
        return {"log": [repr(first), type(second).__name__]}

    app = _graph(store, a)

    async def go() -> None:
        with use_clock(TestClock(T0)) as clock:
            r = await app.run({})
            [p] = app.pending_interrupts(r.run_id)
            assert p.deadline == T0 + 60 and p.to_json()["deadline"] == T0 + 60
            assert store.wake_time(r.run_id) == T0 + 60
            clock.advance(59)
            assert await app.resume_due() == []
            clock.advance(1)
            [r2] = await app.resume_due()  # times out: the default, recorded as its answer
            assert r2.status == "paused"
            [p2] = app.pending_interrupts(r.run_id)
            assert p2.payload == {"q": "escalate?"} and p2.deadline == T0 + 60 + 30
            r3 = await app.resume(r.run_id, "yes, late but before the waker")
            assert r3.status == "completed"
            assert r3.state.log == ["'no'", "str"]
            rep = await app.replay(r.run_id)
            assert rep.identical

    asyncio.run(go())


def test_a_timed_out_interrupt_without_default_returns_timed_out(store):
    seen: list[Any] = []

    async def a(s: S, ctx: Any) -> dict[str, Any]:
        seen.append(await ctx.interrupt("?", timeout=10))
        return {}

    app = _graph(store, a)

    async def go() -> None:
        with use_clock(TestClock(T0)) as clock:
            await app.run({})
            clock.advance(10)
            [r] = await app.resume_due()
            assert r.status == "completed"

    asyncio.run(go())
    assert seen == [TimedOut(T0 + 10)]


def test_bad_times_are_refused_naming_the_node(store):
    async def a(s: S, ctx: Any) -> dict[str, Any]:
        await ctx.sleep(-1)
        return {}

    async def b(s: S, ctx: Any) -> dict[str, Any]:
        await ctx.sleep_until(datetime(2030, 1, 1))  # naive
        return {}

    for node in (a, b):
        app = _graph(store, node, name=node.__name__)
        with pytest.raises(Exception) as e:
            app.run_sync({})
        assert isinstance(e.value.__cause__, TimerError), e.value
        assert "FS240" in str(e.value.__cause__)


def test_schedules_fire_once_per_time_with_each_catchup_policy(store):
    app = _graph(store, lambda s: {"n": s.n + 1}, name="cron")

    async def go() -> None:
        with use_clock(TestClock(T0)) as clock:
            for policy in ("skip", "all", "latest"):
                add_schedule(app, policy, cron="*/10 * * * *", input={"n": 1}, catchup=policy)  # type: ignore[arg-type]
            clock.advance(600)  # the first firing, on time
            started = await fire_schedules(store, {"cron": app})
            assert sorted(started) == sorted(
                f"{p}@2027-01-15T08:10:00+00:00" for p in ("skip", "all", "latest")
            )
            assert await fire_schedules(store, {"cron": app}) == []  # once per firing
            clock.advance(3600 + 120)  # all down for an hour: six firings missed (> grace)
            fired = await fire_schedules(store, {"cron": app})
            by = {p: [r for r in fired if r.startswith(p + "@")] for p in ("skip", "all", "latest")}
            assert by["skip"] == [] and len(by["all"]) == 6 and len(by["latest"]) == 1
            assert by["latest"] == ["latest@2027-01-15T09:10:00+00:00"]
            for rid in fired:
                assert app.get_run(rid).status == "completed"
                assert app.get_state(rid).n == 2
            assert store.get_schedule("skip").next_fire == T0 + 4800
            pause_schedule(store, "all")
            clock.advance(600)
            assert not [r for r in await fire_schedules(store, {"cron": app}) if "all@" in r]
            assert [t for t, _ in store.firings("latest")] == [T0 + 600, T0 + 4200, T0 + 4800]

    asyncio.run(go())


def test_bad_schedules_are_refused_with_the_fix(store):
    app = _graph(store, lambda s: {}, name="bad")
    with use_clock(TestClock(T0)):
        for kw, needle in (
            ({"cron": "61 * * * *"}, "five fields"),
            ({"cron": "0 0 30 2 *"}, "invalid"),
            ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "IANA"),
            ({"cron": "* * * * *", "catchup": "some"}, "skip"),
        ):
            with pytest.raises(ScheduleError, match=needle):
                add_schedule(app, "x", **kw)
        with pytest.raises(InputRejected):
            add_schedule(app, "x", cron="* * * * *", input={"n": "many"})
        add_schedule(app, "x", cron="* * * * *")
        with pytest.raises(ScheduleError, match="exists already"):
            add_schedule(app, "x", cron="* * * * *")
        store.delete_schedule("x")
        with pytest.raises(ScheduleNotFound):
            store.get_schedule("x")
    assert json.loads("{}") == {}


def test_a_database_made_before_m601_opens_and_its_runs_keep_their_hashes(tmp_path):
    """m601 adds a column to the hashed runs table: rows written before it still verify,
    and the new tables work on the migrated file."""
    import sqlite_utils

    from flowstate.checkpoints import RunRecord, SQLiteStore, StepRecord
    from flowstate.checkpoints._common import RUN_COLS, run_values
    from flowstate.checkpoints._sqlite_schema import migrations

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m601_timers_schedules")
    assert "wake_at" not in db["runs"].columns_dict  # type: ignore[union-attr]
    run = RunRecord(
        id="old", graph="g", fingerprint="f", graph_doc="{}", status="paused",
        input="{}", error="interrupt in 'a'", created_at=T0, updated_at=T0,
    )  # fmt: skip
    cols = ", ".join(f'"{c}"' for c in (*RUN_COLS, "hash", "mhash"))
    marks = ", ".join("?" for _ in range(len(RUN_COLS) + 2))
    db.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", run_values(run))
    db.conn.commit()
    db.close()
    store = SQLiteStore(path)
    assert store.get_run("old") == run  # the hash still verifies
    assert store.wake_time("old") is None and store.due_runs(T0 + 1e9) == []
    store.update_run("old", status="paused", error="sleeping", head_step=0, wake_at=T0 + 5)
    assert store.due_runs(T0 + 5) == [("old", T0 + 5)]
    assert store.get_run("old").error == "sleeping"
    store.create_run(
        run.model_copy(update={"id": "new"}),
        StepRecord(run_id="new", step=0, tasks="[]", created_at=T0),
    )
    assert store.find_run("new") is not None
    store.close()


def test_a_sleep_inside_a_subgraph_pauses_the_parent_which_the_waker_resumes(store):
    async def a(s: S, ctx: Any) -> dict[str, Any]:
        await ctx.sleep(100)
        return {"log": ["child woke"]}

    c = GraphBuilder(S, name="child")
    c.add_node("a", a)
    c.add_edge(START, "a").add_edge("a", END)
    p = GraphBuilder(S, name="parent")
    p.add_node("sub", c.compile())
    p.add_edge(START, "sub").add_edge("sub", END)
    app = p.compile(store=store)

    async def go() -> None:
        with use_clock(TestClock(T0)) as clock:
            r = await app.run({})
            assert r.status == "paused" and "sleeping in 'a'" in (r.reason or "")
            assert store.wake_time(r.run_id) == T0 + 100  # on the parent: wakers resume it
            clock.advance(100)
            [done] = await app.resume_due()  # the child run is continued by its parent
            assert done.run_id == r.run_id and done.state.log == ["child woke"]
            assert store.due_runs(T0 + 1e6) == []

    asyncio.run(go())
