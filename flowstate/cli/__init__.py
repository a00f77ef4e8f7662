"""The ``flowstate`` command: run graphs, list and inspect runs, resume, draw graphs.

Every error of every command prints one line with its code and exits non-zero; no
traceback unless ``--debug`` (anywhere on the line) or ``FLOWSTATE_DEBUG=1`` (see
``FlowstateGroup``). Every command finds its database by one rule (``resolve_db``).

The commands live by job: `_runs` (run, resume, replay, fork), `_inspect` (runs, show,
graph), `_threads` (threads), `_maint` (prune, doctor), `_fleet` (enqueue, worker,
workers, requeue) and `_service` (serve). `_group` turns errors into one line and tidies
help, `_load` loads `module:attr`, `_common` holds the database rule and what else the
commands share, `_console` the consoles and `_live` the live display.
This module builds the typer `app` and registers them, in the order `flowstate --help`
lists them.
"""

from __future__ import annotations

import typer

from flowstate.errors import CLIError

from ._common import DB_HELP, console, err_console, load_graph, resolve_db
from ._fleet import enqueue, requeue, worker, workers
from ._group import FlowstateGroup
from ._inspect import graph_cmd, runs, show
from ._maint import doctor, prune
from ._runs import fork, replay, resume, run
from ._service import register_service
from ._threads import threads
from ._time import schedule_app

__all__ = [
    "DB_HELP",
    "CLIError",
    "app",
    "console",
    "err_console",
    "load_graph",
    "main",
    "resolve_db",
]

app = typer.Typer(
    cls=FlowstateGroup,
    help="flowstate: durable LLM agents as typed graphs. Run, inspect, resume, draw. "
    "Add --debug to any command for a traceback on error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"max_content_width": 80},
)

for _command in (run, resume, runs, show, threads, replay, fork, prune, doctor):
    app.command()(_command)
for _command in (enqueue, worker, workers, requeue):
    app.command()(_command)
app.command("graph")(graph_cmd)
app.add_typer(schedule_app, name="schedule")
register_service(app)
del _command


def main() -> None:  # pragma: no cover - console script entry
    app()
