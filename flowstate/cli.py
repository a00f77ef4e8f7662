"""The ``flowstate`` command: run graphs, list and inspect runs, resume, draw graphs.

Errors print one line (with the error code) and exit non-zero; no tracebacks unless
``FLOWSTATE_DEBUG=1``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from flowstate.checkpoints import SQLiteStore
from flowstate.engine import CompiledGraph, GraphBuilder
from flowstate.engine._app import DEFAULT_DB
from flowstate.errors import FlowstateError

app = typer.Typer(
    help="flowstate: durable LLM agents as typed graphs. Run, inspect, resume, draw.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DB_HELP = "SQLite checkpoint file (default: $FLOWSTATE_DB or ./flowstate.db)."


class CLIError(Exception):
    """A user-facing error of the command line itself."""


def _db(db: str | None) -> str:
    return db or os.environ.get("FLOWSTATE_DB", DEFAULT_DB)


def _store(db: str | None, must_exist: bool = True) -> SQLiteStore:
    path = _db(db)
    if must_exist and not Path(path).exists():
        raise CLIError(f"no checkpoint database at {path}: pass --db PATH or set FLOWSTATE_DB")
    return SQLiteStore(path)


def load_graph(target: str, db: str | None = None, llm: str | None = None) -> CompiledGraph[Any]:
    """Import ``module:attr`` (a CompiledGraph, a GraphBuilder, or a function returning
    one) given by the user on the command line, and bind it to the store."""
    if ":" not in target:
        raise CLIError(f"'{target}' is not module:attr; e.g. examples.quickstart:graph")
    mod_name, attr = target.split(":", 1)
    if mod_name.endswith(".py") or "/" in mod_name:
        path = Path(mod_name)
        sys.path.insert(0, str(path.parent.resolve()))
        mod_name = path.stem
    else:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise CLIError(f"cannot import module '{mod_name}': {e}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module '{mod_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, CompiledGraph | GraphBuilder):
        import inspect

        kwargs: dict[str, Any] = {}
        spec = llm or os.environ.get("FLOWSTATE_LLM")
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if "llm" in params:
            if not spec:
                raise CLIError(
                    f"'{target}' needs a model: pass --llm anthropic:MODEL or --llm scripted:FILE"
                )
            from flowstate.llm import llm_from_spec

            kwargs["llm"] = llm_from_spec(spec)
        obj = obj(**kwargs)
    if isinstance(obj, GraphBuilder):
        obj = obj.compile(store=_db(db))
    if not isinstance(obj, CompiledGraph):
        raise CLIError(
            f"'{target}' is a {type(obj).__name__}, not a compiled graph: point at the result "
            "of GraphBuilder.compile(), a GraphBuilder, or a function returning one"
        )
    if db or (obj._store is None and obj._store_arg is None):
        return obj._bind(SQLiteStore(_db(db)))
    return obj


def _fail(e: BaseException) -> None:
    if os.environ.get("FLOWSTATE_DEBUG"):
        raise e
    msg = str(e).splitlines()
    err_console.print(f"[bold red]error:[/] {msg[0] if msg else type(e).__name__}", highlight=False)
    for line in msg[1:]:
        err_console.print(line, highlight=False)
    raise typer.Exit(code=1)


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except typer.Exit:
        raise
    except (FlowstateError, CLIError, ValueError, OSError) as e:
        _fail(e)
    except KeyboardInterrupt:
        err_console.print("interrupted; the run can be resumed with `flowstate resume`")
        raise typer.Exit(code=130) from None


def _json_arg(raw: str | None, what: str) -> Any:
    if raw is None:
        return None
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text()
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise CLIError(
            f"{what} is not valid JSON ({e.msg} at char {e.pos}): {raw[:80]!r}"
        ) from None


class _LiveView:
    """A live table of activations, fed by the engine's event stream."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, str, str], list[str]] = {}
        self.status = "running"
        self.live: Live | None = None

    def table(self) -> Table:
        t = Table(title=f"run: {self.status}", expand=False)
        for col in ("step", "node", "status", "ms", "update"):
            t.add_column(col)
        for row in list(self.rows.values())[-30:]:
            t.add_row(*row)
        return t

    def __call__(self, e: Any) -> None:
        kind = getattr(e, "kind", "")
        rid = getattr(e, "run_id", "")
        if kind == "node_started":
            self.rows[(e.step, e.task_path, rid)] = [
                str(e.step),
                _nested(rid, e.task_path),
                "[yellow]running",
                "",
                "",
            ]
        elif kind == "node_finished":
            upd = json.dumps(e.update)
            self.rows[(e.step, e.task_path, rid)] = [
                str(e.step),
                _nested(rid, e.task_path),
                "[green]done",
                f"{e.duration_ms:.0f}",
                upd if len(upd) < 70 else upd[:67] + "...",
            ]
        elif kind == "node_retrying":
            self.rows[(e.step, e.task_path, rid)] = [
                str(e.step),
                _nested(rid, e.task_path),
                f"[yellow]retry {e.attempt}",
                "",
                e.error,
            ]
        elif kind == "node_failed":
            self.rows[(e.step, e.task_path, rid)] = [
                str(e.step),
                _nested(rid, e.task_path),
                "[red]failed",
                "",
                e.error[:70],
            ]
        elif kind == "run_finished" and "/" not in rid:
            self.status = e.status
        if self.live is not None:
            self.live.update(self.table())


def _nested(run_id: str, path: str) -> str:
    depth = run_id.count("/") // 2
    return ("  " * depth + "└ " if depth else "") + path


def _print_result(result: Any) -> None:
    console.print(
        f"run [bold]{result.run_id}[/] {result.status}"
        + (f": {result.reason}" if result.reason else ""),
        highlight=False,
    )
    for payload in getattr(result, "interrupts", []) or []:
        console.print(f"waiting for input: {json.dumps(payload)}", highlight=False, markup=False)
    console.print_json(result.state.model_dump_json())


def _drive(coro_fn: Callable[[Callable[[Any], None]], Any], quiet: bool) -> Any:
    view = _LiveView()
    if quiet or not console.is_terminal:
        return asyncio.run(coro_fn(view))
    with Live(view.table(), console=console, refresh_per_second=8) as live:
        view.live = live
        return asyncio.run(coro_fn(view))


@app.command()
def run(
    graph: str = typer.Argument(..., help="The graph, as module:attr (or path.py:attr)."),
    input: str = typer.Option("{}", "--input", "-i", help="Input state as JSON, or @file."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    run_id: str | None = typer.Option(None, "--run-id", help="Choose the run id."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Activation limit."),
    llm: str | None = typer.Option(
        None, "--llm", help="Model for prebuilt graphs: anthropic:MODEL or scripted:FILE."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live display."),
) -> None:
    """Run a graph from an input, checkpointing every node, with a live display."""

    def go() -> None:
        g = load_graph(graph, db, llm)
        data = _json_arg(input, "--input")
        result = _drive(
            lambda v: g.run(data, run_id=run_id, max_steps=max_steps, on_event=v), quiet
        )
        _print_result(result)
        if result.status != "completed":
            raise typer.Exit(code=3 if result.status == "paused" else 1)

    _guard(go)


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The run to continue."),
    graph: str | None = typer.Option(
        None, "--graph", "-g", help="The graph (module:attr); default: $FLOWSTATE_GRAPH."
    ),
    value: str | None = typer.Option(None, "--value", help="JSON answer to a pending interrupt."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Raise the activation limit."),
    allow_graph_change: bool = typer.Option(
        False, "--allow-graph-change", help="Resume although the graph changed."
    ),
    llm: str | None = typer.Option(
        None, "--llm", help="Model for prebuilt graphs: anthropic:MODEL or scripted:FILE."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live display."),
) -> None:
    """Continue a crashed, failed, paused or cancelled run from its last checkpoint."""

    def go() -> None:
        target = _need_graph(graph)
        _store(db)
        g = load_graph(target, db, llm)
        val = _json_arg(value, "--value")
        result = _drive(
            lambda v: g.resume(
                run_id,
                value=val,
                max_steps=max_steps,
                allow_graph_change=allow_graph_change,
                on_event=v,
            ),
            quiet,
        )
        _print_result(result)
        if result.status != "completed":
            raise typer.Exit(code=3 if result.status == "paused" else 1)

    _guard(go)


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@app.command()
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
                pending = [
                    json.loads(i.payload) for i in store.interrupts(r.id) if i.answer is None
                ]
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
                    "waiting_for": pending,
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
                pend = [i for i in store.interrupts(r.id) if i.answer is None]
                note = f"waiting: {pend[0].payload[:40]}" if pend else (r.error or "")
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


@app.command()
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
        for i in store.interrupts(run_id):
            if i.answer is None:
                console.print(
                    f"  [yellow]waiting for input[/] at step {i.step} ({i.task_path}): {i.payload}",
                    highlight=False,
                )
        t = Table(title="activations")
        for col in ("step", "node", "effects", "ms", "tokens", "update"):
            t.add_column(col, overflow="fold")
        effects: dict[tuple[int, str], int] = {}
        for e in store.effects(run_id):
            effects[(e.step, e.task_path)] = effects.get((e.step, e.task_path), 0) + 1
        children = {
            c.id: c for c in store.list_runs(parent_id=run_id, include_children=True, limit=10_000)
        }
        tokens = 0
        for w in store.writes(run_id):
            usage = json.loads(w.usage)
            tk = sum(int(v) for v in usage.values()) if usage else 0
            tokens += tk
            t.add_row(
                str(w.step),
                w.task_path,
                str(effects.get((w.step, w.task_path), 0)),
                f"{(w.finished_at - w.started_at) * 1000:.0f}",
                str(tk or ""),
                w.update,
            )
            child = children.get(f"{run_id}/{w.step}/{w.task_path}")
            if child is not None:
                for cw in store.writes(child.id):
                    t.add_row(
                        f"  {w.step}.{cw.step}",
                        f"  └ {cw.task_path}",
                        "",
                        f"{(cw.finished_at - cw.started_at) * 1000:.0f}",
                        "",
                        cw.update,
                    )
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


def _need_graph(graph: str | None) -> str:
    target = graph or os.environ.get("FLOWSTATE_GRAPH")
    if not target:
        raise CLIError(
            "which graph? pass --graph module:attr (the code is never loaded from the "
            "database) or set FLOWSTATE_GRAPH"
        )
    return target


@app.command()
def replay(
    run_id: str = typer.Argument(..., help="The recorded run to replay."),
    graph: str | None = typer.Option(
        None, "--graph", "-g", help="The graph (module:attr); default: $FLOWSTATE_GRAPH."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    allow_graph_change: bool = typer.Option(
        False, "--allow-graph-change", help="Replay although the graph changed."
    ),
    llm: str | None = typer.Option(
        None, "--llm", help="Model for prebuilt graphs: anthropic:MODEL or scripted:FILE."
    ),
) -> None:
    """Re-execute a recorded run offline (every effect from the journal) and report the
    first divergence from the recording."""

    def go() -> None:
        _store(db)
        g = load_graph(_need_graph(graph), db, llm)
        report = asyncio.run(
            g.replay(run_id, raise_on_divergence=False, allow_graph_change=allow_graph_change)
        )
        console.print(report.summary(), highlight=False)
        d = report.first_divergence
        if d is not None:
            if d.fields:
                console.print_json(json.dumps(d.fields))
            if d.effect:
                console.print_json(json.dumps(d.effect))
            raise typer.Exit(code=2)

    _guard(go)


@app.command()
def fork(
    run_id: str = typer.Argument(..., help="The run to fork."),
    at: int = typer.Option(..., "--at", help="Start from the state at this step."),
    set_: str | None = typer.Option(None, "--set", help="JSON patch of state fields."),
    graph: str | None = typer.Option(
        None, "--graph", "-g", help="The graph (module:attr); default: $FLOWSTATE_GRAPH."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    reuse_effects: bool = typer.Option(
        False, "--reuse-effects", help="Serve effects whose requests match the parent's."
    ),
    llm: str | None = typer.Option(
        None, "--llm", help="Model for prebuilt graphs: anthropic:MODEL or scripted:FILE."
    ),

    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live display."),
) -> None:
    """Start a new run from a step of an existing one, optionally patched."""

    def go() -> None:
        _store(db)
        g = load_graph(_need_graph(graph), db, llm)
        patch = _json_arg(set_, "--set")
        result = _drive(
            lambda v: g.fork(run_id, at=at, update=patch, reuse_effects=reuse_effects, on_event=v),
            quiet,
        )
        _print_result(result)
        if result.status != "completed":
            raise typer.Exit(code=3 if result.status == "paused" else 1)

    _guard(go)


@app.command()
def prune(
    older_than: str = typer.Option(..., "--older-than", help="Age, e.g. 30d, 12h, 90m."),
    status: str | None = typer.Option(None, "--status", help="Only runs with this status."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted."),
) -> None:
    """Delete old runs with everything that hangs off them (writes, effects, interrupts,
    snapshots, child runs). Running runs are kept unless --status running."""
    from flowstate.checkpoints import parse_age
    from flowstate.checkpoints import prune as do_prune

    def go() -> None:
        store = _store(db)
        ids = do_prune(store, older_than=parse_age(older_than), status=status, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        console.print(f"{verb} {len(ids)} run{'s' if len(ids) != 1 else ''}", highlight=False)
        for i in ids[:50]:
            console.print(f"  {i}", highlight=False)

    _guard(go)


@app.command()
def doctor(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    vacuum: bool = typer.Option(False, "--vacuum", help="Compact the database file."),
) -> None:
    """Check the database: SQLite's integrity check, rows per table, largest runs."""
    from flowstate.checkpoints import doctor as do_doctor

    def go() -> None:
        path = _db(db)
        if not Path(path).exists():
            raise CLIError(f"no checkpoint database at {path}")
        store = SQLiteStore(path, migrate=False)
        rep = do_doctor(store, vacuum=vacuum)
        color = "green" if rep.ok else "red"
        console.print(
            f"{rep.path}: integrity [{color}]{rep.integrity}[/], {rep.file_bytes:,} bytes",
            highlight=False,
        )
        if rep.rows:
            t = Table(title="rows per table")
            t.add_column("table")
            t.add_column("rows", justify="right")
            for name, n in rep.rows.items():
                t.add_row(name, f"{n:,}")
            console.print(t)
        if rep.largest_runs:
            t = Table(title="largest runs")
            t.add_column("run")
            t.add_column("bytes", justify="right")
            for rid, n in rep.largest_runs:
                t.add_row(rid, f"{n:,}")
            console.print(t)
        if rep.vacuumed_bytes is not None:
            console.print(f"vacuumed: {rep.vacuumed_bytes:,} bytes", highlight=False)
        if not rep.ok:
            raise typer.Exit(code=1)

    _guard(go)


@app.command("graph")
def graph_cmd(
    target: str = typer.Argument(..., help="The graph, as module:attr."),
) -> None:
    """Print the graph as a Mermaid flowchart."""
    _guard(
        lambda: console.print(
            load_graph(target, ":memory:").to_mermaid(), highlight=False, markup=False
        )
    )


def _register_service() -> None:
    try:
        from flowstate.service import serve_command
    except ImportError:  # the service extra (fastapi, uvicorn) is not installed

        @app.command("serve")
        def serve_missing() -> None:
            """Run the HTTP task service (needs `pip install 'flowstate[service]'`)."""
            _fail(
                CLIError(
                    "the task service needs fastapi and uvicorn: pip install 'flowstate[service]'"
                )
            )

        return
    app.command("serve")(serve_command)


_register_service()


def main() -> None:  # pragma: no cover - console script entry
    app()
