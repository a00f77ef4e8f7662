"""The ``flowstate`` command: run graphs, list and inspect runs, resume, draw graphs.

Errors print one line (with the error code) and exit non-zero; no tracebacks unless
``FLOWSTATE_DEBUG=1``.

The commands live by job: `_runs` (run, resume, replay, fork), `_inspect` (runs, show,
graph), `_maint` (prune, doctor) and `_service` (serve); `_common` holds what they share
and `_live` the live display. This module builds the typer `app` and registers them, in the
order `flowstate --help` lists them.
"""

from __future__ import annotations

import typer

from ._common import DB_HELP, CLIError, console, err_console, load_graph
from ._inspect import graph_cmd, runs, show
from ._maint import doctor, prune
from ._runs import fork, replay, resume, run
from ._service import register_service

__all__ = [
    "DB_HELP",
    "CLIError",
    "app",
    "console",
    "err_console",
    "load_graph",
    "main",
]

app = typer.Typer(
    help="flowstate: durable LLM agents as typed graphs. Run, inspect, resume, draw.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _command in (run, resume, runs, show, replay, fork, prune, doctor):
    app.command()(_command)
app.command("graph")(graph_cmd)
register_service(app)
del _command


def main() -> None:  # pragma: no cover - console script entry
    app()
