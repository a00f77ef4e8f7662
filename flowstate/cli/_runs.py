"""Commands that execute a graph: run, resume, replay, fork."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from flowstate.engine import UNSET

from ._common import (
    DB_HELP,
    CLIError,
    _guard,
    _json_arg,
    _need_graph,
    _store,
    console,
    load_graph,
)
from ._live import _drive, _print_result


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


def resume(
    run_id: str = typer.Argument(..., help="The run to continue."),
    graph: str | None = typer.Option(
        None, "--graph", "-g", help="The graph (module:attr); default: $FLOWSTATE_GRAPH."
    ),
    value: str | None = typer.Option(
        None, "--value", help="JSON answer to the one pending interrupt."
    ),
    answer: list[str] = typer.Option(
        [],
        "--answer",
        help="ID=JSON: answer the pending interrupt ID (ids: `flowstate show RUN`); repeatable.",
    ),
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
        val = UNSET if value is None else _json_arg(value, "--value")
        answers: dict[str, Any] = {}
        for item in answer:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise CLIError(
                    f"--answer {item!r} is not ID=JSON; e.g. --answer '0:ask:0=\"yes\"' "
                    "(`flowstate show RUN` lists the ids)"
                )
            answers[key] = _json_arg(raw, f"--answer {key}")
        result = _drive(
            lambda v: g.resume(
                run_id,
                val,
                answers=answers or None,
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
