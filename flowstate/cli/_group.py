"""The ``flowstate`` command group: every error of every command prints one line with its
code, and every command's help reads well at 80 columns."""

from __future__ import annotations

import errno
import inspect
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import Abort, TyperException

from flowstate.errors import CLIError

from ._console import debug_requested, err_console, set_debug

__all__ = ["FlowstateGroup", "error_line", "print_error"]


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

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        _tidy_help(self)
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        argv = [a for a in argv if a != "--debug"]
        set_debug(debug)
        try:
            return self._main(argv, prog_name, complete_var, standalone_mode, **extra)
        finally:
            set_debug(False)

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
            if debug_requested():
                traceback.print_exception(e, file=sys.stderr)
            print_error(e)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)
