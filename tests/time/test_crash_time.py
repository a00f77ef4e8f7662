"""Hypothesis crash sweeps over durable time (RELIABILITY.md R1): the process "dies" at a
random crash point (``flowstate._crashpoints``) while a run sleeps or is woken, or while a
schedule fires; a new store and graph on the same SQLite file recover. Whatever the point:
the sleeper wakes once, never early, with the effect before the sleep run once; each
firing time starts one run, which completes."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, _crashpoints
from flowstate.checkpoints import SQLiteStore
from flowstate.clock import TestClock, use_clock
from flowstate.engine import add_schedule, fire_schedules
from tests.conftest import SimulatedCrash

T0 = 1_800_000_000.0
_seq = itertools.count()


class S(BaseModel):
    woke_at: float = 0.0
    n: int = 0


def _sleeper(db: Path, clock: TestClock, done: list[str]) -> Any:
    async def a(s: S, ctx: Any) -> dict[str, Any]:
        await ctx.effect("prep", lambda: done.append("prep"))
        await ctx.sleep(3600)
        woke = await ctx.effect("woke", lambda: clock.now())
        return {"woke_at": woke}

    g = GraphBuilder(S, name="sleeper")
    g.add_node("a", a)
    g.add_edge(START, "a").add_edge("a", END)
    return g.compile(store=SQLiteStore(db))


def _ticker(db: Path) -> Any:
    g = GraphBuilder(S, name="ticker")
    g.add_node("inc", lambda s: {"n": s.n + 1})
    g.add_edge(START, "inc").add_edge("inc", END)
    return g.compile(store=SQLiteStore(db))


def _crash_at(k: int) -> Any:
    count = 0

    def hook(name: str) -> None:
        nonlocal count
        count += 1
        if count >= k:  # dead from the k-th point on
            raise SimulatedCrash(name)

    return hook


def _die(app: Any) -> None:
    app.store.conn.close()  # whatever was not committed is gone, as after kill -9


@settings(max_examples=25, deadline=None, database=None)
@given(k=st.integers(min_value=1, max_value=45), late=st.floats(min_value=0, max_value=5000))
def test_a_kill_anywhere_around_a_sleep_loses_nothing_and_never_wakes_early(k, late):
    db = Path(tempfile.mkdtemp()) / f"s{next(_seq)}.db"
    done: list[str] = []
    with use_clock(TestClock(T0)) as clock:
        app = _sleeper(db, clock, done)
        _crashpoints.set_hook(_crash_at(k))
        try:
            app.run_sync({}, run_id="r")
            clock.advance(3600 + late)
            asyncio.run(app.resume_due())
        except SimulatedCrash:
            pass
        finally:
            _crashpoints.set_hook(None)
        _die(app)
        # a new process: crash recovery resumes a run left `running`; a waker wakes it
        for _ in range(3):
            app = _sleeper(db, clock, done)
            run = app.store.find_run("r")
            if run is None:
                app.run_sync({}, run_id="r")
            elif run.status == "running":
                app.resume_sync("r")
            if clock.now() < T0 + 3600:
                assert asyncio.run(app.resume_due()) == []  # never early
                clock.set(T0 + 3600 + late)
            asyncio.run(app.resume_due())
            if app.get_run("r").status == "completed":
                break
        final = app.get_run("r")
        assert final.status == "completed"
        assert app.get_state("r").woke_at >= T0 + 3600
        assert done.count("prep") <= 2  # at-least-once for an effect cut before its record
        with sqlite3.connect(db) as c:
            names = [n for (n,) in c.execute("SELECT name FROM effects ORDER BY seq")]
        assert names == ["prep", "flowstate.sleep", "woke"]  # journaled once each
        _die(app)


@settings(max_examples=20, deadline=None, database=None)
@given(k=st.integers(min_value=1, max_value=40), policy=st.sampled_from(["skip", "all"]))
def test_a_kill_anywhere_during_a_firing_still_starts_one_run_per_time(k, policy):
    db = Path(tempfile.mkdtemp()) / f"f{next(_seq)}.db"
    with use_clock(TestClock(T0)) as clock:
        app = _ticker(db)
        add_schedule(app, "t", cron="*/10 * * * *", catchup=policy)  # type: ignore[arg-type]
        clock.advance(600 + 30)  # one firing, on time
        _crashpoints.set_hook(_crash_at(k))
        try:
            asyncio.run(fire_schedules(app.store, {"ticker": app}))
        except SimulatedCrash:
            pass
        finally:
            _crashpoints.set_hook(None)
        _die(app)
        app = _ticker(db)
        clock.advance(10)  # restarted within the grace: a firing the crash lost is made
        asyncio.run(fire_schedules(app.store, {"ticker": app}))
        clock.advance(120)  # later: a run its dead firer left unfinished is taken up
        asyncio.run(fire_schedules(app.store, {"ticker": app}))
        fired = app.store.firings("t")
        assert [t for t, _ in fired] == [T0 + 600]
        [(_, rid)] = fired
        assert app.get_run(rid).status == "completed" and app.get_state(rid).n == 1
        assert len(app.store.list_runs(graph="ticker")) == 1
        _die(app)
