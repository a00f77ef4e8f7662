"""What every command shares: the consoles, the database rule, loading a graph, JSON
arguments, and turning every error into one line with its code and an exit code."""

from __future__ import annotations

import ast
import errno
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup
from typer.exceptions import Abort, TyperException

from flowstate.checkpoints import describe_store, is_postgres_url, open_store
from flowstate.engine import CompiledGraph, GraphBuilder
from flowstate.errors import (
    RESUME_GRAPH_PLACEHOLDER,
    CLIError,
    DatabaseNotFound,
    FlowstateError,
    GraphLoadError,
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

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
    "CLIError",
    "Database",
    "FlowstateGroup",
    "console",
    "err_console",
    "load_graph",
    "resolve_db",
]


# -- errors: one line, a code, an exit code --------------------------------------------------


_debug_flag = False
"""Set while a command given ``--debug`` runs."""


def _debug_requested() -> bool:
    return _debug_flag or os.environ.get("FLOWSTATE_DEBUG", "") not in ("", "0")


def error_line(e: BaseException) -> str:
    """The one line an error prints as: ``FSxxx: what happened and what to do``."""
    text = str(e).strip()
    code = getattr(e, "code", None)
    if not isinstance(code, str) or not code:
        code = _code_for_foreign(e)
        if code == "FS000":
            text = f"unexpected {type(e).__name__}: {text or 'no message'}"
            text += " (a bug: run again with --debug for the traceback, and report it)"
    if not text.startswith(code):
        text = f"{code}: {text}"
    return text


def _code_for_foreign(e: BaseException) -> str:
    """A code for an error that carries none (a library's, or a layer not yet in the tree)."""
    try:
        from flowstate.llm import LLMConfigError
    except ImportError:  # pragma: no cover - the llm package is part of flowstate
        return "FS000"
    if isinstance(e, LLMConfigError):
        return CLIError.code
    return "FS000"


def print_error(e: BaseException) -> None:
    """Print ``e`` as ``error: FSxxx: ...`` on stderr. A graph error keeps its numbered
    problems under that line (one per line, each with its fix); any other message is
    folded into one line."""
    text = error_line(e)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and not all(ln.startswith("  (") for ln in lines[1:]):
        lines = [" ".join(ln.strip() for ln in lines)]
    err_console.print(f"error: {lines[0]}", highlight=False, markup=False)
    for ln in lines[1:]:
        err_console.print(ln, highlight=False, markup=False)


def _silence_broken_pipe() -> None:
    """The reader went away (``flowstate runs --json | head -1``): stop quietly, as Unix
    tools do, and keep Python from complaining when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test runner)
        pass


_METAVARS = {
    "graph": "GRAPH",
    "target": "GRAPH",
    "graphs": "REGISTRY",
    "db": "DB",
    "input": "JSON",
    "value": "JSON",
    "set_": "JSON",
    "llm": "SPEC",
    "run_id": "RUN",
    "quarantine": "RUN",
    "older_than": "AGE",
    "wait": "SECONDS",
    "task_timeout": "SECONDS",
}


def _tidy_help(group: Any) -> None:
    """Make every command's help read well at 80 columns, whoever registered it: a
    docstring's paragraphs are joined into lines the terminal wraps (not cut where the
    source happened to break), flags show no ``<bool>`` placeholder, and values show a
    name (``GRAPH``, ``JSON``, ``N``) instead of a Python type."""
    commands = [group, *getattr(group, "commands", {}).values()]
    for cmd in commands:
        if cmd.help:
            paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(cmd.help))
            cmd.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
        for p in cmd.params:
            _tidy_param(p)
        if not getattr(cmd, "_flowstate_tidy", False):
            get_help_option = cmd.get_help_option

            def tidy_help_option(ctx: Any, _get: Any = get_help_option) -> Any:
                opt = _get(ctx)
                if opt is not None:
                    _tidy_param(opt)
                return opt

            cmd.get_help_option = tidy_help_option
            cmd._flowstate_tidy = True


def _tidy_param(p: Any) -> None:
    if p.param_type_name == "argument":
        # the name column already says GRAPH; typer would add a '<str>' type column
        p.display_type_rich = lambda ctx: None
        return
    if getattr(p, "metavar", None) is not None:
        return
    if getattr(p, "is_flag", False):
        p.metavar = ""
    else:
        p.metavar = _METAVARS.get(p.name or "", "N" if _is_number(p) else "TEXT")


def _is_number(p: Any) -> bool:
    bare = getattr(p, "bare_type", None)
    return callable(bare) and bare() in ("int", "float")


class FlowstateGroup(TyperGroup):
    """The ``flowstate`` command group: every error of every command (typer's usage
    errors included) prints one line with its code and exits non-zero; ``--debug``
    anywhere on the command line, or ``FLOWSTATE_DEBUG=1``, prints the traceback too."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        global _debug_flag
        _tidy_help(self)
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        argv = [a for a in argv if a != "--debug"]
        _debug_flag = debug
        try:
            return self._main(argv, prog_name, complete_var, standalone_mode, **extra)
        finally:
            _debug_flag = False

    def _main(
        self,
        argv: list[str],
        prog_name: str | None,
        complete_var: str | None,
        standalone_mode: bool,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as e:  # typer's usage errors: bad or missing options
            ctx = getattr(e, "ctx", None)
            if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())
                sys.exit(0)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            print_error(CLIError(f"{e.format_message()}{hint}"))
            sys.exit(e.exit_code or 1)
        except Abort:
            err_console.print("aborted", highlight=False)
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("interrupted; a run can be continued with `flowstate resume`")
            sys.exit(130)
        except BrokenPipeError:
            _silence_broken_pipe()
            sys.exit(141)
        except Exception as e:
            if isinstance(e, OSError) and e.errno == errno.EPIPE:
                _silence_broken_pipe()
                sys.exit(141)
            if _debug_requested():
                traceback.print_exception(e, file=sys.stderr)
            print_error(e)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


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


# -- loading a graph ------------------------------------------------------------------------


def _import_module(target: str, mod_name: str) -> Any:
    if mod_name.endswith(".py") or "/" in mod_name or os.sep in mod_name:
        path = Path(mod_name if mod_name.endswith(".py") else mod_name + ".py")
        if not path.is_file():
            raise GraphLoadError(f"no file '{path}' (from '{target}'): check the path")
        sys.path.insert(0, str(path.parent.resolve()))
        mod_name = path.stem
    elif os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if mod_name not in sys.modules:
        _warn_if_runs_at_import(mod_name)
    try:
        return importlib.import_module(mod_name)
    except ImportError as e:
        raise GraphLoadError(f"cannot import module '{mod_name}': {e}") from None
    except FlowstateError:
        raise
    except Exception as e:
        if _debug_requested():
            raise
        where = ""
        tb = traceback.extract_tb(e.__traceback__)
        if tb:
            where = f" ({Path(tb[-1].filename).name}, line {tb[-1].lineno})"
        raise GraphLoadError(
            f"importing module '{mod_name}' raised {type(e).__name__}: {e}{where}; "
            "fix the module (--debug shows the traceback)"
        ) from None


_RUN_METHODS = {"run", "run_sync", "resume", "resume_sync", "fork", "replay", "stream"}
"""Calls that start a run (``app.run_sync(...)``, and ``asyncio.run(app.run(...))``)."""
_NOT_RUNS = {"subprocess", "uvicorn"}
"""Modules whose ``run`` is not a graph's."""


def _warn_if_runs_at_import(mod_name: str) -> None:
    """Warn when a graph module starts a run at import time, outside
    ``if __name__ == "__main__":`` and outside functions: every command that loads it
    would run it again."""
    try:
        spec = importlib.util.find_spec(mod_name)
    except (ImportError, ValueError):
        return
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test):
            continue
        for node in ast.walk(stmt):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _RUN_METHODS
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id in _NOT_RUNS)
            ):
                err_console.print(
                    f"warning: {spec.origin} starts a run when it is imported (line "
                    f"{node.lineno}: {ast.unparse(node)[:60]}); every flowstate command that "
                    'loads it runs it again. Put it under `if __name__ == "__main__":`.',
                    highlight=False,
                    markup=False,
                )
                return


def _is_factory(obj: Any) -> tuple[bool, str]:
    """Whether ``obj`` can be called to build a graph: a function whose parameters all have
    defaults, except ``llm``. Returns (ok, why not)."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False, "its signature cannot be read"
    required = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name != "llm"
    ]
    if required:
        return False, f"it takes ({', '.join(required)}), so it looks like a node or a router"
    return True, ""


def load_graph(target: str, llm: str | None = None) -> CompiledGraph[Any]:
    """Import ``module:attr`` or ``path/to/file.py:attr`` given on the command line: a
    CompiledGraph, a GraphBuilder (compiled with its default store), or a function
    returning one (given ``llm`` when it takes one). Not yet bound to the command's
    database: see ``resolve_db``."""
    if ":" not in target or target.endswith(":"):
        raise GraphLoadError(
            f"'{target}' is not module:attr; e.g. myapp.graphs:app or path/to/file.py:app"
        )
    mod_name, attr = target.rsplit(":", 1)
    module = _import_module(target, mod_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(
                n
                for n, v in vars(module).items()
                if isinstance(v, CompiledGraph | GraphBuilder) and not n.startswith("_")
            )
            hint = f"; its graphs: {', '.join(names)}" if names else ""
            raise GraphLoadError(f"module '{mod_name}' has no attribute '{attr}'{hint}")
        obj = getattr(obj, part)
    expected = (
        "point at a compiled graph (the result of GraphBuilder.compile()), a GraphBuilder, or "
        "a function returning one"
    )
    if isinstance(obj, type):
        raise GraphLoadError(f"'{target}' is a class ({obj.__name__}), not a graph: {expected}")
    if callable(obj) and not isinstance(obj, CompiledGraph | GraphBuilder):
        ok, why = _is_factory(obj)
        if not ok:
            raise GraphLoadError(f"'{target}' is a function but not a graph: {why}; {expected}")
        kwargs: dict[str, Any] = {}
        if "llm" in inspect.signature(obj).parameters:
            spec = llm or os.environ.get("FLOWSTATE_LLM")
            if not spec:
                raise CLIError(
                    f"'{target}' needs a model: pass --llm anthropic:MODEL or "
                    "--llm scripted:FILE.json (or set FLOWSTATE_LLM)"
                )
            from flowstate.llm import llm_from_spec

            kwargs["llm"] = llm_from_spec(spec)
        try:
            obj = obj(**kwargs)
        except FlowstateError:
            raise
        except Exception as e:
            if _debug_requested():
                raise
            raise GraphLoadError(
                f"calling '{target}' to build the graph raised {type(e).__name__}: {e}"
            ) from None
    elif llm:
        raise CLIError(
            f"'{target}' takes no model, so --llm {llm} would not be used: --llm is for "
            "functions that build a graph from a model (an llm parameter), like "
            "flowstate.graphs:react_agent"
        )
    if isinstance(obj, GraphBuilder):
        obj = obj.compile()
    if not isinstance(obj, CompiledGraph):
        raise GraphLoadError(f"'{target}' is a {type(obj).__name__}, not a graph: {expected}")
    return obj


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
        g = g._bind(store)
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
