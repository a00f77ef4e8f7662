"""``flowstate serve``: the task service under uvicorn.

Register it on the CLI with ``app.command("serve")(serve_command)``.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from flowstate.checkpoints import describe_store, open_store
from flowstate.errors import CLIError, FlowstateError, GraphLoadError

from ._protocol import ServerLimits

__all__ = ["serve_command"]

DEFAULT_DB = "flowstate.db"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(
    graphs: Annotated[
        str,
        typer.Argument(
            help="The graphs to serve, as module:attr or path/to/file.py:attr: a "
            "GraphRegistry, a dict or a list of compiled graphs. Clients pick one by name."
        ),
    ],
    db: Annotated[
        str | None,
        typer.Option(
            help="SQLite checkpoint file or postgresql:// URL (default: $FLOWSTATE_DB or "
            "./flowstate.db)."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Interface to bind. Default: loopback only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8000,
    max_concurrent_runs: Annotated[
        int, typer.Option(min=1, help="Tasks executing at once; the others wait queued.")
    ] = 8,
    task_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds a task may execute before it is cancelled (reason 'timeout')."),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Larger request bodies are refused with 413.")
    ] = 1_048_576,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve on a non-loopback interface without FLOWSTATE_TOKEN (not advised).",
        ),
    ] = False,
    store_probe_seconds: Annotated[
        float,
        typer.Option(
            min=0.05,
            help="Seconds between write probes of the store (/ready is 503 while writes "
            "fail; tasks a storage fault stopped resume once a probe passes).",
        ),
    ] = 5.0,
    header_timeout: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="Seconds a client has to send a request's line and headers (then 408).",
        ),
    ] = ServerLimits.header_timeout,
    body_timeout: Annotated[
        float,
        typer.Option(
            min=0.01, help="Seconds a client has to send a request's body after its headers."
        ),
    ] = ServerLimits.body_timeout,
    max_connections: Annotated[
        int,
        typer.Option(min=1, help="Open connections at most; a further one gets 503."),
    ] = ServerLimits.max_connections,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    enqueue_only: Annotated[
        bool,
        typer.Option(
            "--enqueue-only",
            help="Execute nothing here: put tasks on the run queue of --db (a postgresql:// "
            "URL or an SQLite file) for `flowstate worker` processes.",
        ),
    ] = False,
    queue: Annotated[
        str, typer.Option(help="With --enqueue-only: the queue tasks go on.")
    ] = "default",
) -> None:
    """Serve the task API (create, status, list, cancel, resume, events). Unfinished
    tasks in the database are resumed at startup. Set FLOWSTATE_TOKEN to require
    'Authorization: Bearer <token>'."""
    import uvicorn

    from ._app import create_app
    from ._protocol import server_config
    from ._registry import load_registry

    token = os.environ.get("FLOWSTATE_TOKEN") or None
    if token is None and not _is_loopback(host) and not allow_unauthenticated:
        raise CLIError(
            f"refusing to serve on {host} without a token: set FLOWSTATE_TOKEN, "
            "bind 127.0.0.1, or pass --allow-unauthenticated"
        )
    try:
        registry = load_registry(graphs)
    except ValueError as e:
        raise GraphLoadError(str(e)) from None
    path = db or os.environ.get("FLOWSTATE_DB", DEFAULT_DB)
    try:  # a database that cannot be opened is refused now, not after the server is up
        probe = open_store(path)
        shown = describe_store(probe)  # a password in a URL is masked
        probe.close()
    except FlowstateError:
        raise
    except Exception as e:
        raise CLIError(f"cannot open the database {path}: {e}; check --db") from None
    app = create_app(
        registry,
        db=path,
        token=token,
        max_concurrent_runs=max_concurrent_runs,
        task_timeout=task_timeout,
        max_body_bytes=max_body_bytes,
        enqueue_only=enqueue_only,
        queue=queue,
        store_probe_seconds=store_probe_seconds,
    )
    typer.echo(
        f"flowstate serve: graphs {', '.join(registry)}; db {shown}; "
        f"{'enqueue-only (queue ' + repr(queue) + '); ' if enqueue_only else ''}"
        f"auth {'bearer token' if token else 'off'}; inspector http://{host}:{port}/ui/",
        err=True,
    )
    limits = ServerLimits(header_timeout, body_timeout, max_connections)
    config = server_config(
        app,
        limits,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    uvicorn.Server(config).run()
