"""What every command shares: the consoles, the store, loading a graph, JSON arguments,
and turning errors into one line and an exit code."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from flowstate.checkpoints import SQLiteStore
from flowstate.engine import DEFAULT_DB, CompiledGraph, GraphBuilder, load_target
from flowstate.errors import FlowstateError

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
    obj = load_target(target)
    if callable(obj) and not isinstance(obj, CompiledGraph | GraphBuilder):
        import inspect

        kwargs: dict[str, Any] = {}
        spec = llm or os.environ.get("FLOWSTATE_LLM")
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            params = {}
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
    if db or not obj.has_store:
        return obj.bind(SQLiteStore(_db(db)))
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


def _need_graph(graph: str | None) -> str:
    target = graph or os.environ.get("FLOWSTATE_GRAPH")
    if not target:
        raise CLIError(
            "which graph? pass --graph module:attr (the code is never loaded from the "
            "database) or set FLOWSTATE_GRAPH"
        )
    return target
