"""The fleet's commands: enqueue, worker, workers, requeue (PostgreSQL, or an SQLite file
shared by the processes of one machine)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Mapping
from typing import Any

import typer

from flowstate.checkpoints import RunQueue
from flowstate.engine import (
    UNSET,
    CompiledGraph,
    GraphBuilder,
    Worker,
    answer_interrupts,
    load_target,
)
from flowstate.errors import CLIError, GraphLoadError, NoWorkerGraphs

from ._common import DB_HELP, VERBOSE_HELP, console, json_arg, resolve_db

__all__ = ["enqueue", "requeue", "worker", "workers"]

FLEET_DB_HELP = (
    "The fleet's database: an SQLite file (several processes on one machine) or a "
    "postgresql:// URL (several machines; ?schema=NAME picks the schema)."
)


def _queue_of(store: Any) -> RunQueue:
    return RunQueue(store)


def load_graphs(target: str) -> dict[str, CompiledGraph[Any]]:
    """The graphs ``module:ATTR`` names: a registry (any mapping of name -> graph), a dict
    or list of compiled graphs (or builders), one graph, or a function returning one."""
    obj = load_target(target)
    if callable(obj) and not isinstance(obj, CompiledGraph | GraphBuilder | Mapping):
        obj = obj()
    items: list[Any]
    if isinstance(obj, Mapping):
        items = list(obj.values())
    elif isinstance(obj, list | tuple):
        items = list(obj)
    else:
        items = [obj]
    out: dict[str, CompiledGraph[Any]] = {}
    for g in items:
        if isinstance(g, GraphBuilder):
            g = g.compile()
        if not isinstance(g, CompiledGraph):
            raise GraphLoadError(
                f"'{target}' holds a {type(g).__name__}; a worker runs compiled graphs: "
                "point --graphs at a GraphRegistry, a dict or a list of compiled graphs"
            )
        out[g.name] = g
    if not out:
        raise NoWorkerGraphs(target)
    return out


def enqueue(
    graph: str = typer.Argument(..., help="The graph: module:attr or path/to/file.py:attr."),
    input: str = typer.Option("{}", "--input", "-i", help="Input state as JSON, or @FILE."),
    db: str | None = typer.Option(None, "--db", help=FLEET_DB_HELP),
    queue: str = typer.Option("default", "--queue", help="The queue to put the run on."),
    run_id: str | None = typer.Option(None, "--run-id", help="Choose the run id."),
    max_attempts: int = typer.Option(
        3, "--max-attempts", help="Claims before the run is dead-lettered."
    ),
    priority: int = typer.Option(0, "--priority", help="Higher is claimed first."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Store a run as queued for a fleet worker (`flowstate worker`); print its id."""
    data = json_arg(input, "--input")
    d = resolve_db(db, graph, must_exist=False, verbose=verbose)  # an SQLite file is created
    assert d.graph is not None
    run = d.graph.enqueue(
        data, queue=queue, run_id=run_id, max_attempts=max_attempts, priority=priority
    )
    console.print(run.id, highlight=False)


def requeue(
    run_id: str = typer.Argument(..., help="The run to put back on the queue."),
    db: str | None = typer.Option(None, "--db", help=FLEET_DB_HELP),
    answer: list[str] = typer.Option(
        [], "--answer", help="ID=JSON: answer the pending interrupt ID first; repeatable."
    ),
    value: str | None = typer.Option(
        None, "--value", help="JSON answer to the one pending interrupt, or @FILE."
    ),
    queue: str = typer.Option("default", "--queue", help="The queue to put the run on."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Claims before dead-lettering."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Put a dead, failed, cancelled or answered paused run back on the queue (attempts
    reset); a worker continues it from its last commit."""
    d = resolve_db(db, verbose=verbose)
    q = _queue_of(d.store)
    answers: dict[str, Any] = {}
    for item in answer:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--answer {item!r} is not ID=JSON; `flowstate show RUN` lists ids")
        answers[key] = json_arg(raw, f"--answer {key}")
    val = UNSET if value is None else json_arg(value, "--value")
    d.store.get_run(run_id)
    if val is not UNSET or answers:
        answer_interrupts(d.store, run_id, value=val, answers=answers or None)
    run = q.enqueue(run_id, queue=queue, max_attempts=max_attempts)
    console.print(f"{run.id} queued on '{queue}'", highlight=False)


def worker(
    graphs: str = typer.Option(..., "--graphs", help="The graphs to run: module:REGISTRY."),
    db: str | None = typer.Option(None, "--db", help=FLEET_DB_HELP),
    concurrency: int = typer.Option(4, "--concurrency", "-c", help="Runs executed at once."),
    queues: str = typer.Option("default", "--queues", help="Comma-separated queues to serve."),
    lease_ttl: float | None = typer.Option(
        None, "--lease-ttl", help="Seconds a dead worker's runs wait for another (default 30)."
    ),
    drain_timeout: float = typer.Option(
        30.0, "--drain-timeout", help="On SIGTERM: seconds to finish held runs, then hand back."
    ),
    poll: float = typer.Option(2.0, "--poll", help="Longest sleep between claims."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Claim queued runs (and runs whose worker died) and execute them, until SIGTERM or
    Ctrl-C, which stops claiming and drains."""
    loaded = load_graphs(graphs)
    d = resolve_db(db, must_exist=False, verbose=verbose)  # an SQLite file is created
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    w = Worker(
        d.store,
        loaded,
        concurrency=concurrency,
        queues=[q.strip() for q in queues.split(",") if q.strip()] or ["default"],
        lease_ttl=lease_ttl,
        poll=poll,
        drain_timeout=drain_timeout,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.stop)
        await w.run()

    asyncio.run(main())


def workers(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per worker."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """The fleet's workers: who, since when, holding what, last heartbeat."""
    d = resolve_db(db, verbose=verbose)
    now = time.time()
    for w in _queue_of(d.store).workers():
        if as_json:
            console.print_json(json.dumps(w.__dict__))
            continue
        age = now - w.heartbeat_at
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(w.started_at))
        held = ", ".join(w.holding) or "-"
        console.print(
            f"{w.id}  {w.state}  since {since}  heartbeat {age:.1f}s ago  "
            f"queues {','.join(w.queues)}  graphs {','.join(sorted(w.graphs))}  "
            f"holding {len(w.holding)}/{w.concurrency}: {held}",
            highlight=False,
            markup=False,
        )
