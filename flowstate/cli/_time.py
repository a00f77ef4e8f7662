"""Durable time on the command line: `flowstate resume --due` (wake runs whose timer or
interrupt deadline has come) and `flowstate schedule add|list|pause|resume|delete|run`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from flowstate.checkpoints import TimerStore
from flowstate.clock import iso
from flowstate.engine import (
    add_schedule,
    fire_schedules,
    pause_schedule,
    resume_schedule,
    wake_due,
)
from flowstate.errors import CLIError

from ._common import DB_HELP, GRAPH_HELP, console, json_arg, need_graph, resolve_db
from ._group import FlowstateGroup

__all__ = ["resume_due", "schedule_app"]


def _timers(store: Any) -> TimerStore:
    if not isinstance(store, TimerStore):
        raise CLIError(f"the store {store!r} keeps no timers or schedules")
    return store


async def _tick(d: Any, *, schedules: bool) -> list[Any]:
    graphs = {d.graph.name: d.graph}
    fired = await fire_schedules(d.store, graphs) if schedules else []
    for run_id in fired:
        console.print(f"fired schedule run [bold]{run_id}[/]", highlight=False)
    woken = await wake_due(d.store, graphs)
    for r in woken:
        console.print(
            f"woke run [bold]{r.run_id}[/]: {r.status}" + (f": {r.reason}" if r.reason else ""),
            highlight=False,
        )
    return woken


def _loop(d: Any, *, watch: bool, poll: float, schedules: bool) -> None:
    async def go() -> None:
        while True:
            await _tick(d, schedules=schedules)
            if not watch:
                return
            await asyncio.sleep(poll)

    try:
        asyncio.run(go())
    except KeyboardInterrupt:  # --watch ends with Ctrl-C
        pass


def resume_due(graph: str | None, db: str | None, watch: bool, poll: float) -> None:
    """`flowstate resume --due [--watch]`: resume every run of the graph that is due."""
    if poll <= 0:
        raise CLIError(f"--poll must be a positive number of seconds, not {poll}")
    d = resolve_db(db, need_graph(graph))
    _loop(d, watch=watch, poll=poll, schedules=False)
    nxt = _timers(d.store).next_wake()
    if nxt is not None and not watch:
        console.print(f"next wake-up: {iso(nxt)}", highlight=False)


schedule_app = typer.Typer(
    cls=FlowstateGroup,
    help="Start runs on a cron schedule: add, list, pause, resume, delete, run.",
    no_args_is_help=True,
)


@schedule_app.command("add")
def add(
    name: str = typer.Argument(..., help="Unique schedule name."),
    graph: str | None = typer.Option(None, "--graph", "-g", help=GRAPH_HELP),
    cron: str = typer.Option(..., "--cron", help='Five-field cron, e.g. "0 7 * * 1-5".'),
    input: str = typer.Option("{}", "--input", "-i", help="Input of each run: JSON or @FILE."),
    catchup: str = typer.Option(
        "skip", "--catchup", help="Missed firings: skip, all (one run each) or latest."
    ),
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone of the cron expression."),
    replace: bool = typer.Option(False, "--replace", help="Replace a schedule of that name."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Add a schedule: a run of the graph at every time the cron expression names."""
    data = json_arg(input, "--input")
    d = resolve_db(db, need_graph(graph), must_exist=False)
    assert d.graph is not None
    rec = add_schedule(
        d.graph,
        name,
        cron=cron,
        input=data,
        catchup=catchup,  # type: ignore[arg-type]  # checked by add_schedule (FS241)
        tz=tz,
        replace=replace,
    )
    console.print(
        f"schedule [bold]{rec.name}[/] added: {rec.cron} ({rec.tz}), next {iso(rec.next_fire)}",
        highlight=False,
    )


@schedule_app.command("list")
def list_(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List the schedules with their next firing time."""
    d = resolve_db(db)
    for s in _timers(d.store).list_schedules():
        if as_json:
            console.print_json(json.dumps(s.model_dump()))
            continue
        state = "paused" if s.paused else f"next {iso(s.next_fire)}"
        console.print(
            f"{s.name}  {s.graph}  {s.cron} ({s.tz})  catchup={s.catchup}  {state}",
            highlight=False,
            markup=False,
        )


@schedule_app.command("pause")
def pause(
    name: str = typer.Argument(..., help="The schedule."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Stop firing a schedule until `schedule resume`."""
    pause_schedule(resolve_db(db).store, name)
    console.print(f"schedule {name} paused", highlight=False, markup=False)


@schedule_app.command("resume")
def resume(
    name: str = typer.Argument(..., help="The schedule."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Fire a paused schedule again (what it missed follows its --catchup policy)."""
    resume_schedule(resolve_db(db).store, name)
    console.print(f"schedule {name} resumed", highlight=False, markup=False)


@schedule_app.command("delete")
def delete(
    name: str = typer.Argument(..., help="The schedule."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Delete a schedule (the runs it started stay)."""
    _timers(resolve_db(db).store).delete_schedule(name)
    console.print(f"schedule {name} deleted", highlight=False, markup=False)


@schedule_app.command("run")
def run(
    graph: str | None = typer.Option(None, "--graph", "-g", help=GRAPH_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    once: bool = typer.Option(False, "--once", help="Fire what is due now, then exit."),
    poll: float = typer.Option(1.0, "--poll", help="Seconds between looks (with no --once)."),
) -> None:
    """Fire the graph's due schedules and wake its due runs, until Ctrl-C (or --once).
    Any number may run at once: each firing time starts one run."""
    if poll <= 0:
        raise CLIError(f"--poll must be a positive number of seconds, not {poll}")
    d = resolve_db(db, need_graph(graph))
    _loop(d, watch=not once, poll=poll, schedules=True)
