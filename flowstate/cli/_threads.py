"""``flowstate threads [THREAD]``: the threads of a database, or one thread's turns."""

from __future__ import annotations

import json
import time

import typer
from rich.table import Table

from flowstate.errors import ThreadNotFound

from ._common import DB_HELP, GRAPH_HELP, VERBOSE_HELP, console, resolve_db


def _when(ts: float) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts))


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def threads(
    thread: str | None = typer.Argument(None, help="A thread id: list its turns."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    graph: str | None = typer.Option(None, "--graph", "-g", help=GRAPH_HELP),
    limit: int = typer.Option(50, "--limit", help="How many threads."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """List threads (conversations: runs that are turns of one evolving state), latest
    first; with THREAD, its turns: number, run, status, what was sent."""
    store = resolve_db(db, graph, verbose=verbose).store
    if thread is None:
        rows = store.threads(limit=limit)
        lasts = {t.thread_id: store.thread_runs(t.thread_id) for t in rows}
        if as_json:
            for t in rows:
                last = lasts[t.thread_id][-1] if lasts[t.thread_id] else None
                doc = {
                    **t.model_dump(),
                    "last_run_id": last.id if last else None,
                    "last_status": last.status if last else None,
                }
                typer.echo(json.dumps(doc))
            return
        table = Table(title=f"{len(rows)} thread{'s' if len(rows) != 1 else ''}")
        for col in ("thread", "turns", "last run", "status", "last turn at"):
            table.add_column(col)
        for t in rows:
            last = lasts[t.thread_id][-1] if lasts[t.thread_id] else None
            table.add_row(
                t.thread_id,
                str(t.turns),
                last.id if last else "",
                last.status if last else "",
                _when(t.last_at),
            )
        console.print(table)
        return
    turns = store.thread_runs(thread)
    if not turns:
        raise ThreadNotFound(thread)
    if as_json:
        for r in turns:
            doc = {
                "thread_id": thread,
                "turn": r.turn,
                "run_id": r.id,
                "status": r.status,
                "input": json.loads(r.input),
                "error": r.error,
                "created_at": r.created_at,
            }
            typer.echo(json.dumps(doc))
        return
    table = Table(title=f"thread {thread}: {len(turns)} turn{'s' if len(turns) != 1 else ''}")
    for col in ("turn", "run", "status", "created", "input"):
        table.add_column(col)
    for r in turns:
        note = f" — {r.error}" if r.error and r.status != "completed" else ""
        table.add_row(
            str(r.turn), r.id, r.status, _when(r.created_at), _clip(r.input) + _clip(note, 40)
        )
    console.print(table)
    first = turns[0]
    if first.parent_id is not None:
        console.print(
            f"forked from run {first.parent_id} at step {first.parent_step}", highlight=False
        )
