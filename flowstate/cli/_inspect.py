"""Commands that look at runs and graphs: runs, show, graph."""

from __future__ import annotations

import json
import time

import typer
from rich.table import Table

from flowstate.engine import pending_interrupts

from ._common import DB_HELP, CLIError, _db, _guard, _store, console, load_graph


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def runs(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    status: str | None = typer.Option(None, "--status", help="Only runs with this status."),
    graph: str | None = typer.Option(None, "--graph", help="Only runs of this graph."),
    limit: int = typer.Option(50, "--limit", help="How many runs."),
    children: bool = typer.Option(False, "--children", help="Include subgraph runs."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List runs: id, graph, status, steps, started, updated."""

    def go() -> None:
        store = _store(db)
        rows = store.list_runs(status=status, graph=graph, limit=limit, include_children=children)
        if as_json:
            for r in rows:
                pending = pending_interrupts(store, r.id)
                row = {
                    "id": r.id,
                    "graph": r.graph,
                    "status": r.status,
                    "steps": r.head_step,
                    "created_at": r.created_at,
                    "updated_at": r.updated_at,
                    "parent_id": r.parent_id,
                    "parent_step": r.parent_step,
                    "reason": r.error,
                    "waiting_for": [p.payload for p in pending],
                    "interrupts": [p.to_json() for p in pending],
                }
                print(json.dumps(row))
            return
        t = Table(title=f"runs in {_db(db)}")
        for col in ("id", "graph", "status", "steps", "started", "updated", "parent", "note"):
            t.add_column(col, overflow="fold")
        for r in rows:
            color = {
                "completed": "green",
                "failed": "red",
                "paused": "yellow",
                "running": "cyan",
                "cancelled": "magenta",
            }.get(r.status, "white")
            note = ""
            if r.status == "paused":
                pend = pending_interrupts(store, r.id)
                note = (
                    f"waiting [{pend[0].id}]: {json.dumps(pend[0].payload)[:40]}"
                    + (f" (+{len(pend) - 1} more)" if len(pend) > 1 else "")
                    if pend
                    else (r.error or "")
                )
            elif r.status == "failed":
                note = (r.error or "")[:60]
            parent = f"{r.parent_id}@{r.parent_step}" if r.parent_id else ""
            t.add_row(
                r.id,
                r.graph,
                f"[{color}]{r.status}",
                str(r.head_step),
                _ago(r.created_at),
                _ago(r.updated_at),
                parent,
                note,
            )
        console.print(t)

    _guard(go)


def show(
    run_id: str = typer.Argument(..., help="The run to show."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    graph: str | None = typer.Option(
        None, "--graph", "-g", help="The graph (module:attr), to rebuild typed states."
    ),
    step: int | None = typer.Option(None, "--step", help="Show the state at this step."),
    diff: bool = typer.Option(False, "--diff", help="With --step: what that step changed."),
) -> None:
    """Show a run: each committed activation with its update, and the state."""

    def go() -> None:
        store = _store(db)
        run = store.get_run(run_id)
        console.print(
            f"run [bold]{run.id}[/]  graph {run.graph}  status [bold]{run.status}[/]"
            f"  steps {run.head_step}",
            highlight=False,
        )
        if run.error:
            console.print(f"  reason: {run.error}", highlight=False)
        if run.parent_id:
            console.print(f"  parent: {run.parent_id} at step {run.parent_step}")
        for p in pending_interrupts(store, run_id):
            console.print(
                f"  [yellow]waiting for input[/] [bold]{p.id}[/] ({p.node} at step {p.step}, "
                f"{p.task_path}): {json.dumps(p.payload)}",
                highlight=False,
            )
        t = Table(title="activations")
        for col in ("step", "node", "effects", "ms", "tokens", "update"):
            t.add_column(col, overflow="fold")
        tokens = 0

        def rows(rid: str, depth: int, prefix: str) -> None:
            """The activations of ``rid``, each followed by its subgraph's, at every depth."""
            nonlocal tokens
            children = set(store.child_run_ids(rid))
            effects: dict[tuple[int, str], int] = {}
            for e in store.effects(rid):
                effects[(e.step, e.task_path)] = effects.get((e.step, e.task_path), 0) + 1
            for w in store.writes(rid):
                usage = json.loads(w.usage)
                tk = sum(int(v) for v in usage.values()) if usage else 0
                if depth == 0:
                    tokens += tk  # a subgraph activation's usage counts its child run
                indent = "  " * depth
                t.add_row(
                    f"{indent}{prefix}{w.step}",
                    f"{indent}{'└ ' if depth else ''}{w.task_path}",
                    str(effects.get((w.step, w.task_path), 0)),
                    f"{(w.finished_at - w.started_at) * 1000:.0f}",
                    str(tk or ""),
                    w.update,
                )
                child = f"{rid}/{w.step}/{w.task_path}"
                if child in children:
                    rows(child, depth + 1, f"{prefix}{w.step}.")

        rows(run_id, 0, "")
        console.print(t)
        if tokens:
            console.print(f"tokens: {tokens}")
        if graph:
            g = load_graph(graph, db)
            if step is not None:
                st = g.state_at(run_id, step)
                if diff:
                    nxt = g.state_at(run_id, min(step + 1, run.head_step))
                    a, b = st.model_dump(mode="json"), nxt.model_dump(mode="json")
                    changed = {k: {"before": a[k], "after": b[k]} for k in a if a[k] != b[k]}
                    console.print(f"step {step} changed:")
                    console.print_json(json.dumps(changed))
                else:
                    console.print(f"state at step {step}:")
                    console.print_json(st.model_dump_json())
            else:
                console.print("state:")
                console.print_json(g.get_state(run_id).model_dump_json())
        else:
            snap = store.last_snapshot(run_id, run.head_step)
            if step is not None or diff:
                raise CLIError("--step/--diff rebuild typed state: pass --graph module:attr")
            if snap is not None and snap.step == run.head_step and snap.snapshot:
                console.print_json(snap.snapshot)
            else:
                console.print("(pass --graph module:attr to rebuild and print the state)")

    _guard(go)


def graph_cmd(
    target: str = typer.Argument(..., help="The graph, as module:attr."),
) -> None:
    """Print the graph as a Mermaid flowchart."""
    _guard(
        lambda: console.print(
            load_graph(target, ":memory:").to_mermaid(), highlight=False, markup=False
        )
    )
