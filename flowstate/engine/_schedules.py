"""Schedules: start a run of a graph at every time a cron expression names.

A schedule is a row in the checkpoint database (``ScheduleRecord``). A scheduler — the
service's background loop, ``flowstate schedule run``, or any process calling
``fire_schedules`` — fires the schedules of the graphs it serves. Each firing time starts
at most one run, however many schedulers run at once: the run is created in the same
transaction as the firing's row, whose primary key is (schedule, fire time), and its id is
derived from both (``NAME@2026-12-03T07:00:00+00:00``).

Firing times missed while no scheduler ran (anything older than ``grace`` seconds when a
scheduler sees it) follow the schedule's ``catchup`` policy: ``skip`` (default) starts
none of them, ``all`` one run per missed time, ``latest`` one run for the most recent.

Cron expressions are read by cronsim (five fields, in the schedule's time zone, daylight
saving time included); they are never hand-parsed here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from flowstate.checkpoints import CatchUp, ScheduleRecord, TimerStore
from flowstate.clock import get_clock, iso
from flowstate.errors import FlowstateError, RunOwned, ScheduleError

if TYPE_CHECKING:
    from ._app import CompiledGraph

__all__ = [
    "GRACE_SECONDS",
    "add_schedule",
    "fire_schedules",
    "next_fire_time",
    "pause_schedule",
    "resume_schedule",
]

log = logging.getLogger("flowstate.schedules")

GRACE_SECONDS = 60.0
"""A firing time seen within this many seconds is on time; older ones were missed."""
MAX_CATCHUP = 1000
"""At most this many missed firings are started at once by ``catchup='all'``."""

Graphs = Mapping[str, "CompiledGraph[Any]"] | Callable[[str], "CompiledGraph[Any] | None"]


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"time zone {tz!r} is unknown: use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def next_fire_time(cron: str, tz: str, after: float) -> float:
    """The first time strictly after ``after`` that ``cron`` names, in zone ``tz``."""
    start = datetime.fromtimestamp(after, _zone(tz))
    try:
        return next(iter(CronSim(cron, start))).timestamp()
    except CronSimError as e:
        raise ScheduleError(
            f"cron expression {cron!r} is invalid ({e}); five fields: minute hour "
            "day-of-month month day-of-week, e.g. '0 7 * * 1-5' (07:00 on weekdays)"
        ) from None
    except StopIteration:
        raise ScheduleError(f"cron expression {cron!r} never fires (e.g. 30 February)") from None


def add_schedule(
    graph: CompiledGraph[Any],
    name: str,
    *,
    cron: str,
    input: Any = None,
    catchup: CatchUp = "skip",
    tz: str = "UTC",
    replace: bool = False,
) -> ScheduleRecord:
    """Store a schedule that starts a run of ``graph`` with ``input`` at every ``cron``
    time (in zone ``tz``), in ``graph``'s store. The input is checked against the graph
    now (``InputRejected``), not at the first firing."""
    if not name or "@" in name or "/" in name:
        raise ScheduleError(
            f"schedule name {name!r} must be non-empty without '@' or '/' (run ids are "
            "derived from it): e.g. 'daily-report'"
        )
    if catchup not in get_args(CatchUp):
        raise ScheduleError(
            f"catchup {catchup!r} is not one of {', '.join(get_args(CatchUp))}: skip (start "
            "nothing for missed times), all (one run each), latest (one run)"
        )
    now = get_clock().now()
    first = next_fire_time(cron, tz, now)
    data = input if input is not None else {}
    run, _ = graph.admit(data)  # the same input checks a run makes
    store = _timer_store(graph.store)
    rec = ScheduleRecord(
        name=name,
        graph=graph.name,
        cron=cron,
        tz=tz,
        input=run.input,
        catchup=catchup,
        next_fire=first,
        created_at=now,
        updated_at=now,
    )
    store.put_schedule(rec, replace=replace)
    return rec


def _timer_store(store: Any) -> TimerStore:
    if not isinstance(store, TimerStore):
        raise ScheduleError(f"store {store!r} cannot keep schedules (it is not a TimerStore)")
    return store


def pause_schedule(store: Any, name: str) -> ScheduleRecord:
    """Stop firing ``name`` until ``resume_schedule``."""
    return _timer_store(store).update_schedule(name, paused=True)


def resume_schedule(store: Any, name: str) -> ScheduleRecord:
    """Fire ``name`` again; the times it missed while paused follow its catch-up policy."""
    return _timer_store(store).update_schedule(name, paused=False)


def _due_times(s: ScheduleRecord, now: float) -> list[float]:
    times: list[float] = []
    t = s.next_fire
    while t <= now and len(times) < MAX_CATCHUP + 1:
        times.append(t)
        t = next_fire_time(s.cron, s.tz, t)
    return times


def _to_fire(s: ScheduleRecord, due: list[float], now: float, grace: float) -> list[float]:
    on_time = [t for t in due if now - t <= grace]
    if s.catchup == "all":
        return due[-MAX_CATCHUP:]
    if s.catchup == "latest":
        return due[-1:]
    return on_time  # skip


def _orphans(
    ts: TimerStore, lookup: Callable[[str], Any], now: float, grace: float, mine: set[str]
) -> list[tuple[CompiledGraph[Any], str]]:
    """Runs a scheduler fired and then died before finishing (still ``queued``, or
    ``running`` with a dead owner, more than ``grace`` seconds after they were created):
    executed by whoever looks next (a live owner keeps its run: resume refuses). A younger
    one belongs to the scheduler that is about to execute it."""
    out: list[tuple[CompiledGraph[Any], str]] = []
    for s in ts.list_schedules():
        graph = lookup(s.graph)
        if graph is None:
            continue
        for _, run_id in ts.firings(s.name)[-5:]:
            if run_id in mine:
                continue
            run = graph.store.find_run(run_id)
            if run is not None and run.status in ("queued", "running"):
                if now - run.created_at > grace:
                    out.append((graph, run_id))
    return out


async def fire_schedules(
    store: Any,
    graphs: Graphs,
    *,
    now: float | None = None,
    grace: float = GRACE_SECONDS,
    execute: bool = True,
) -> list[str]:
    """Fire every due, unpaused schedule of the graphs ``graphs`` serves; returns the ids
    of the runs this call started (a firing another scheduler made first is not among
    them). With ``execute`` (default) each run is then executed here, in firing order;
    otherwise it stays ``queued`` for a worker. Executing also picks up runs a scheduler
    fired and then died before executing."""
    ts = _timer_store(store)
    at = get_clock().now() if now is None else now
    lookup = graphs if callable(graphs) else graphs.get
    started: list[tuple[CompiledGraph[Any], str]] = []
    for s in ts.list_schedules():
        if s.paused or s.next_fire > at:
            continue
        graph = lookup(s.graph)
        if graph is None:
            continue  # another scheduler serves this graph
        graph = graph.bind(store)
        due = _due_times(s, at)
        fire = _to_fire(s, due, at, grace)
        nxt = next_fire_time(s.cron, s.tz, at)
        if not fire:
            ts.update_schedule(s.name, next_fire=nxt)
            log.info("schedule %s skipped %d missed firing(s)", s.name, len(due))
            continue
        for t in fire:
            run, step0 = graph.admit(json.loads(s.input), run_id=f"{s.name}@{iso(t)}")
            if ts.fire_schedule(s.name, t, nxt, run, step0):
                started.append((graph, run.id))
    if execute:
        started += _orphans(ts, lookup, at, grace, {r for _, r in started})
        for graph, run_id in started:
            try:
                await graph.resume(run_id)
            except RunOwned:
                pass  # a worker took it
            except FlowstateError as e:
                log.warning("scheduled run %s failed: %s", run_id, e)
    return [r for _, r in started]
