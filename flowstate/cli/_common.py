"""What the commands share: help texts, JSON arguments, and the one rule by which every
command finds its database (``resolve_db``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from flowstate.checkpoints import describe_store, is_postgres_url, open_store
from flowstate.engine import CompiledGraph
from flowstate.errors import (
    RESUME_GRAPH_PLACEHOLDER,
    CLIError,
    DatabaseNotFound,
    FlowstateError,
)

from ._console import console, err_console
from ._load import load_graph

DEFAULT_DB = "flowstate.db"
"""The database of last resort: ``./flowstate.db`` (see ``resolve_db``)."""

DB_HELP = (
    "SQLite file or postgresql:// URL. Default: the store the graph was compiled with, "
    "else $FLOWSTATE_DB, else ./flowstate.db."
)
VERBOSE_HELP = "Print the database used (to stderr)."
GRAPH_HELP = "The graph: module:attr or path/to/file.py:attr. Default: $FLOWSTATE_GRAPH."
LLM_HELP = "Model for graphs that need one: anthropic:MODEL or scripted:FILE.json."
QUIET_HELP = "No live display."

__all__ = [
    "DB_HELP",
    "Database",
    "console",
    "err_console",
    "json_arg",
    "load_graph",
    "resolve_db",
]


# -- JSON arguments -------------------------------------------------------------------------


def json_arg(raw: str | None, what: str) -> Any:
    """Parse ``raw`` (JSON, or ``@path`` of a JSON file) given for option ``what``."""
    if raw is None:
        return None
    source = raw
    if raw.startswith("@"):
        path = Path(raw[1:])
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as e:
            raise CLIError(
                f"cannot read the {what} file '{path}': {e.strerror or e}; pass an existing "
                f"JSON file as {what} @FILE, or the JSON itself"
            ) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise CLIError(
            f"{what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): "
            f"{source[:80]!r}"
        ) from None


# -- the database rule ------------------------------------------------------------------------


@dataclass
class Database:
    """The database a command uses, and why."""

    store: Any
    """The opened store."""
    where: str
    """Where its rows are (a path, or a URL with the password masked)."""
    source: str
    """Which rule chose it: ``--db``, the graph's store, ``$FLOWSTATE_DB`` or the default."""
    graph: CompiledGraph[Any] | None = None
    """The ``--graph``, bound to ``store``, when one was given."""
    spec: str = ""
    """The database as the user would type it again (``--db`` value, path or URL)."""
    target: str | None = None
    """The ``--graph`` as given (``module:attr`` or ``path.py:attr``)."""

    def complete_hint(self, e: FlowstateError) -> None:
        """Make the resume command in ``e``'s message one that works as printed: the
        ``--graph`` this command was given, and ``--db`` when the graph alone would not
        lead back to this database."""
        text = str(e)
        if RESUME_GRAPH_PLACEHOLDER not in text or self.target is None:
            return
        where = f"--graph {self.target}"
        if self.source == "--db":
            where += f" --db {self.spec}"
        e.args = (text.replace(RESUME_GRAPH_PLACEHOLDER, where), *e.args[1:])


def resolve_db(
    db: str | None,
    graph: str | None = None,
    *,
    llm: str | None = None,
    must_exist: bool = True,
    verbose: bool = False,
    migrate: bool = True,
) -> Database:
    """The one rule every command follows to find its database:

    1. ``--db`` (an SQLite path, ``:memory:`` or a ``postgresql://`` URL);
    2. else the store the ``--graph`` was compiled with, when it names one;
    3. else ``$FLOWSTATE_DB``;
    4. else ``./flowstate.db``.

    ``must_exist``: a command that reads runs refuses an SQLite file that does not exist
    (rather than creating an empty one), naming the rule that chose it."""
    g = load_graph(graph, llm) if graph else None
    store: Any = None
    if db:
        spec, source = db, "--db"
    elif g is not None and g.store_spec is not None:
        source = f"the store of graph {graph}"
        spec = g.store_spec
        if not isinstance(spec, str | os.PathLike):
            store = spec
            spec = describe_store(spec)
    elif os.environ.get("FLOWSTATE_DB"):
        spec, source = os.environ["FLOWSTATE_DB"], "$FLOWSTATE_DB"
    else:
        spec, source = DEFAULT_DB, "the default"
    spec = str(spec)
    if store is None:
        sqlite_file = spec not in (":memory:", "memory://") and not is_postgres_url(spec)
        if must_exist and sqlite_file and not Path(spec).exists():
            raise DatabaseNotFound(
                f"no checkpoint database at {spec} (chosen by {source}); pass --db PATH or "
                "URL, pass the --graph whose store holds the runs, or set FLOWSTATE_DB"
            )
        store = open_store(spec, migrate=migrate)
    where = describe_store(store)
    if verbose:
        err_console.print(f"database: {where} ({source})", highlight=False, markup=False)
    if g is not None and g.store_spec is not store:
        g = g.bind(store)
    return Database(store=store, where=where, source=source, graph=g, spec=spec, target=graph)


def need_graph(graph: str | None) -> str:
    """The graph a command that executes one must be given (or $FLOWSTATE_GRAPH)."""
    target = graph or os.environ.get("FLOWSTATE_GRAPH")
    if not target:
        raise CLIError(
            "which graph? pass --graph module:attr (the code is never loaded from the "
            "database) or set FLOWSTATE_GRAPH"
        )
    return target


def exit_for(status: str) -> None:
    """Exit non-zero unless a run completed: 3 when it paused, 1 otherwise."""
    if status != "completed":
        raise typer.Exit(code=3 if status == "paused" else 1)
