"""``flowstate ui``: the run inspector on its own, over a checkpoint database.

Register it on the CLI with ``app.command("ui")(ui_command)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flowstate.checkpoints import describe_store, is_postgres_url
from flowstate.errors import CLIError, GraphLoadError

from ._cli import DEFAULT_DB, _is_loopback

__all__ = ["ui_command"]


def ui_command(
    db: Annotated[
        str | None,
        typer.Option(
            help="SQLite checkpoint file or postgresql:// URL (default: $FLOWSTATE_DB or "
            "./flowstate.db)."
        ),
    ] = None,
    graphs: Annotated[
        str | None,
        typer.Option(
            help="module:attr of the graphs (as for `serve`): with it the inspector can "
            "answer interrupts, pause, cancel, resume, fork and replay; without it, it only "
            "reads (graph code is never loaded from the database)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind. Default: loopback only.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8001,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Open the web run inspector (runs, steps, state diffs, effects, interrupts, fork,
    replay) at http://HOST:PORT/ui/. Set FLOWSTATE_TOKEN to require a login."""
    import uvicorn

    from ._app import create_app
    from ._protocol import ServerLimits, server_config
    from ._registry import GraphRegistry, load_registry

    token = os.environ.get("FLOWSTATE_TOKEN") or None
    if token is None and not _is_loopback(host):
        raise CLIError(
            f"refusing to serve the inspector on {host} without a token: set "
            "FLOWSTATE_TOKEN or bind 127.0.0.1"
        )
    path = db or os.environ.get("FLOWSTATE_DB", DEFAULT_DB)
    is_url = is_postgres_url(path)
    if not is_url and not Path(path).exists():
        raise CLIError(
            f"no checkpoint database at {path}: pass --db PATH (or a postgresql:// URL) "
            "or set FLOWSTATE_DB"
        )
    try:
        registry = load_registry(graphs) if graphs else GraphRegistry()
    except ValueError as e:
        raise GraphLoadError(str(e)) from None
    app = create_app(registry, db=path, token=token, read_only=not graphs)
    config = server_config(  # the default request-read deadlines and connection limit
        app,
        ServerLimits(),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = uvicorn.Server(config)
    shown = describe_store(app.state.store)
    mode = f"graphs {', '.join(registry)}" if graphs else "read-only"
    typer.echo(
        f"flowstate ui: db {shown}; {mode}; auth {'token login' if token else 'off'}; "
        f"open http://{host}:{port if port else '<port>'}/ui/",
        err=True,
    )
    server.run()
