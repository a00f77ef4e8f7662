"""Commands that look at runs and graphs: runs, show, graph."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer
from rich.table import Table

from flowstate.clock import iso
from flowstate.engine import pending_interrupts
from flowstate.errors import CLIError

from ._common import DB_HELP, GRAPH_HELP, VERBOSE_HELP, console, load_graph, resolve_db


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%m-%d %H:%M", time.localtime(ts))


def _print_usage(store: object, run_id: str, prices_file: str | None) -> None:
    """Tokens and cost per node (child runs' nodes as parent/child) and for the run tree."""
    from flowstate.llm import DEFAULT_PRICES, ModelPrice
    from flowstate.nodes import usage_report

    table = dict(DEFAULT_PRICES)
    if prices_file:
        try:
            raw = json.loads(Path(prices_file).read_text(encoding="utf-8"))
            table.update({m: ModelPrice.model_validate(p) for m, p in raw.items()})
        except (OSError, ValueError, AttributeError) as e:
            raise CLIError(
                f"cannot read the price table {prices_file!r}: {e}; write a JSON object "
                'like {"model": {"input": 3, "output": 15}}'
            ) from None
    report = usage_report(store, run_id, prices=table)  # type: ignore[arg-type]
    if not report.total.tokens:
        return
    t = Table(title="usage (run tree)")
    for col in ("node", "input", "cache write", "cache read", "output", "cost $"):
        t.add_column(col, justify="left" if col == "node" else "right")
    rows = [*report.nodes.items(), ("total", report.total)]
    for name, line in rows:
        t.add_row(
            name,
            str(line.input_tokens),
            str(line.cache_creation_input_tokens),
            str(line.cache_read_input_tokens),
            str(line.output_tokens),
            f"{line.cost_usd:.6f}",
        )
    console.print(t)
    total = report.total
    console.print(f"tokens: {total.tokens}  cost: ${total.cost_usd:.6f}", highlight=False)
    if total.unpriced_models:
        console.print(
            f"  no price for {', '.join(total.unpriced_models)}: counted as $0 "
            "(add them with --prices FILE)",
            highlight=False,
        )


def runs(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    status: str | None = typer.Option(None, "--status", help="Only runs with this status."),
    graph: str | None = typer.Option(
        None,
        "--graph",
        "-g",
        help="Only runs of this graph: its name, or module:attr (then its store is used).",
    ),
    limit: int = typer.Option(50, "--limit", help="How many runs."),
    children: bool = typer.Option(False, "--children", help="Include subgraph runs."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """List runs, newest first: id, graph, status, steps, last update, and a note."""
    target = graph if graph and ":" in graph else None
    d = resolve_db(db, target, verbose=verbose)
    name = d.graph.name if d.graph is not None else graph
    store = d.store
    rows = store.list_runs(status=status, graph=name, limit=limit, include_children=children)
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
    colors = {
        "completed": "green",
        "failed": "red",
        "paused": "yellow",
        "running": "cyan",
        "cancelled": "magenta",
        "dead": "bold red",
    }
    cells: list[list[str]] = []
    for r in rows:
        note = ""
        if r.status == "paused":
            pend = pending_interrupts(store, r.id)
            note = (
                f"waiting [{pend[0].id}]: {json.dumps(pend[0].payload)}"
                + (f" (+{len(pend) - 1} more)" if len(pend) > 1 else "")
                if pend
                else (r.error or "")
            )
        elif r.status == "failed":
            note = r.error or ""
        if r.parent_id:
            note = f"from {r.parent_id}@{r.parent_step} {note}".strip()
        graph_name = r.graph if len(r.graph) <= 14 else r.graph[:13] + "…"
        cells.append([r.id, graph_name, r.status, str(r.head_step), _when(r.updated_at), note])
    if not rows:
        console.print(f"no runs in {d.where}", highlight=False)
        return
    header = ["id", "graph", "status", "steps", "updated", "note"]
    widths = [max(len(header[i]), *(len(c[i]) for c in cells)) for i in range(5)]
    room = max(10, console.width - sum(widths) - 2 * 5)
    t = Table(box=None, pad_edge=False, header_style="bold")
    for name in header:
        t.add_column(name, no_wrap=True, justify="right" if name == "steps" else "left")
    for c in cells:
        note = c[5].replace("\n", " ")
        if len(note) > room:
            note = note[: room - 1] + "…"
        t.add_row(*c[:2], f"[{colors.get(c[2], 'white')}]{c[2]}", c[3], c[4], note)
    console.print(t)


def show(
    run_id: str = typer.Argument(..., help="The run to show."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    graph: str | None = typer.Option(
        None, "--graph", "-g", help=GRAPH_HELP + " Needed to rebuild typed states."
    ),
    step: int | None = typer.Option(None, "--step", help="Show the state at this step."),
    diff: bool = typer.Option(False, "--diff", help="With --step: what that step changed."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
    prices: str | None = typer.Option(
        None,
        "--prices",
        help="JSON file of model prices (USD per million tokens), e.g. "
        '{"my-model": {"input": 1, "output": 4, "cache_write": 1.25, "cache_read": 0.1}}; '
        "merged over the default table.",
    ),
) -> None:
    """Show a run: each committed activation with its update, tokens and cost, and the
    state."""
    if (step is not None or diff) and not (graph or os.environ.get("FLOWSTATE_GRAPH")):
        raise CLIError("--step and --diff rebuild typed state: pass --graph module:attr")
    d = resolve_db(db, graph or os.environ.get("FLOWSTATE_GRAPH"), verbose=verbose)
    store = d.store
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
            f"{p.task_path}): {json.dumps(p.payload)}"
            + (f" (deadline {iso(p.deadline)})" if p.deadline is not None else ""),
            highlight=False,
        )
    t = Table(title="activations")
    for col in ("step", "node", "effects", "ms", "tokens", "update"):
        t.add_column(col, overflow="fold")

    def rows(rid: str, depth: int, prefix: str) -> None:
        """The activations of ``rid``, each followed by its subgraph's, at every depth."""
        children = set(store.child_run_ids(rid))
        effects: dict[tuple[int, str], int] = {}
        for e in store.effects(rid):
            effects[(e.step, e.task_path)] = effects.get((e.step, e.task_path), 0) + 1
        for w in store.writes(rid):
            usage = json.loads(w.usage)
            # per-model keys (input_tokens@model) repeat the totals: count those once
            tk = sum(int(v) for k, v in usage.items() if "@" not in k) if usage else 0
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
    _print_usage(store, run_id, prices)
    if d.graph is not None:
        g = d.graph
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
        if snap is not None and snap.step == run.head_step and snap.snapshot:
            console.print_json(snap.snapshot)
        else:
            console.print("(pass --graph module:attr to rebuild and print the state)")


def graph_cmd(
    target: str = typer.Argument(..., help="The graph: module:attr or path/to/file.py:attr."),
    llm: str | None = typer.Option(
        None, "--llm", help="Model for graphs that need one: anthropic:MODEL or scripted:FILE."
    ),
) -> None:
    """Print the graph as a Mermaid flowchart (no database is opened)."""
    console.print(load_graph(target, llm).to_mermaid(), highlight=False, markup=False)
