"""Commands that execute a graph: run, resume, replay, fork."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from flowstate.engine import UNSET
from flowstate.errors import CLIError, FlowstateError

from ._common import (
    DB_HELP,
    GRAPH_HELP,
    LLM_HELP,
    QUIET_HELP,
    VERBOSE_HELP,
    console,
    exit_for,
    json_arg,
    need_graph,
    resolve_db,
)
from ._live import _drive, _print_result


def run(
    graph: str = typer.Argument(..., help="The graph: module:attr or path/to/file.py:attr."),
    input: str = typer.Option("{}", "--input", "-i", help="Input state as JSON, or @FILE."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    run_id: str | None = typer.Option(None, "--run-id", help="Choose the run id."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Activation limit."),
    llm: str | None = typer.Option(None, "--llm", help=LLM_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Run a graph from an input, checkpointing every node, with a live display."""
    data = json_arg(input, "--input")
    d = resolve_db(db, graph, llm=llm, must_exist=False, verbose=verbose)
    assert d.graph is not None
    g = d.graph
    try:
        result = _drive(
            lambda v: g.run(data, run_id=run_id, max_steps=max_steps, on_event=v), quiet
        )
    except FlowstateError as e:
        d.complete_hint(e)
        raise
    _print_result(result)
    exit_for(result.status)


def resume(
    run_id: str | None = typer.Argument(None, help="The run to continue (none with --due)."),
    graph: str | None = typer.Option(None, "--graph", "-g", help=GRAPH_HELP),
    value: str | None = typer.Option(
        None, "--value", help="JSON answer to the one pending interrupt."
    ),
    answer: list[str] = typer.Option(
        [],
        "--answer",
        help="ID=JSON: answer the pending interrupt ID (ids: `flowstate show RUN`); repeatable.",
    ),
    update: str | None = typer.Option(
        None,
        "--update",
        help="JSON object: edit the state first (validated like a node's update, through "
        "the reducers, recorded and replayed).",
    ),
    goto: list[str] = typer.Option(
        [],
        "--goto",
        help="Continue at this node instead of the pending activations; repeatable.",
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    wait: float | None = typer.Option(
        None, "--wait", help="Seconds to wait for a live owner of the run to finish."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Raise the activation limit."),
    allow_graph_change: bool = typer.Option(
        False, "--allow-graph-change", help="Resume although the graph changed."
    ),
    rerun_step: bool = typer.Option(
        False,
        "--rerun-step",
        help="Run the head step's activations again, committed ones included (after "
        "fixing a node whose update made the step's close fail, FS216).",
    ),
    llm: str | None = typer.Option(None, "--llm", help=LLM_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
    due: bool = typer.Option(
        False, "--due", help="Resume every run whose timer or interrupt deadline is due."
    ),
    watch: bool = typer.Option(False, "--watch", help="With --due: keep waking, until Ctrl-C."),
    poll: float = typer.Option(1.0, "--poll", help="With --watch: seconds between looks."),
) -> None:
    """Continue a crashed, failed, paused or cancelled run from its last checkpoint."""
    if due:
        from ._time import resume_due

        return resume_due(graph, db, watch, poll)
    if run_id is None:
        raise CLIError("which run? pass RUN_ID, or --due to resume every run that is due")
    val = UNSET if value is None else json_arg(value, "--value")
    answers: dict[str, Any] = {}
    for item in answer:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CLIError(
                f"--answer {item!r} is not ID=JSON; e.g. --answer '0:ask:0=\"yes\"' "
                "(`flowstate show RUN` lists the ids)"
            )
        answers[key] = json_arg(raw, f"--answer {key}")
    edit = None if update is None else json_arg(update, "--update")
    if edit is not None and not isinstance(edit, dict):
        raise CLIError(f"--update must be a JSON object of state fields, not {update!r}")
    d = resolve_db(db, need_graph(graph), llm=llm, verbose=verbose)
    assert d.graph is not None
    g = d.graph
    try:
        result = _drive(
            lambda v: g.resume(
                run_id,
                val,
                answers=answers or None,
                update=edit,
                goto=goto or None,
                rerun_step=rerun_step,
                max_steps=max_steps,
                allow_graph_change=allow_graph_change,
                wait=wait,
                on_event=v,
            ),
            quiet,
        )
    except FlowstateError as e:
        d.complete_hint(e)
        raise
    _print_result(result)
    exit_for(result.status)


def replay(
    run_id: str = typer.Argument(..., help="The recorded run to replay."),
    graph: str | None = typer.Option(None, "--graph", "-g", help=GRAPH_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    allow_graph_change: bool = typer.Option(
        False, "--allow-graph-change", help="Replay although the graph changed."
    ),
    llm: str | None = typer.Option(None, "--llm", help=LLM_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Re-execute a recorded run offline (every effect from the journal) and report the
    first divergence from the recording (exit code 2)."""
    d = resolve_db(db, need_graph(graph), llm=llm, verbose=verbose)
    assert d.graph is not None
    report = asyncio.run(
        d.graph.replay(run_id, raise_on_divergence=False, allow_graph_change=allow_graph_change)
    )
    console.print(report.summary(), highlight=False)
    div = report.first_divergence
    if div is not None:
        if div.fields:
            console.print_json(json.dumps(div.fields))
        if div.effect:
            console.print_json(json.dumps(div.effect))
        raise typer.Exit(code=2)


def fork(
    run_id: str = typer.Argument(..., help="The run to fork."),
    at: int = typer.Option(..., "--at", help="Start from the state at this step."),
    set_: str | None = typer.Option(None, "--set", help="JSON patch of state fields."),
    graph: str | None = typer.Option(None, "--graph", "-g", help=GRAPH_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    reuse_effects: bool = typer.Option(
        False, "--reuse-effects", help="Serve effects whose requests match the parent's."
    ),
    llm: str | None = typer.Option(None, "--llm", help=LLM_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Start a new run from a step of an existing one, optionally patched."""
    patch = json_arg(set_, "--set")
    d = resolve_db(db, need_graph(graph), llm=llm, verbose=verbose)
    assert d.graph is not None
    g = d.graph
    try:
        result = _drive(
            lambda v: g.fork(run_id, at=at, update=patch, reuse_effects=reuse_effects, on_event=v),
            quiet,
        )
    except FlowstateError as e:
        d.complete_hint(e)
        raise
    _print_result(result)
    exit_for(result.status)
