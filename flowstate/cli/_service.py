"""The `serve` command: the HTTP task service, or a hint to install it."""

from __future__ import annotations

import typer

from flowstate.errors import CLIError


def register_service(app: typer.Typer) -> None:
    """Add `serve` and `ui` to `app` (stubs that explain the install when the extra is
    missing)."""
    try:
        from flowstate.service import serve_command, ui_command
    except ImportError:  # the service extra (fastapi, uvicorn) is not installed

        @app.command("serve")
        def serve_missing() -> None:
            """Run the HTTP task service (needs `pip install 'flowstate[service]'`)."""
            raise CLIError(
                "the task service needs fastapi and uvicorn: pip install 'flowstate[service]'"
            )

        @app.command("ui")
        def ui_missing() -> None:
            """Open the web run inspector (needs `pip install 'flowstate[service]'`)."""
            raise CLIError(
                "the inspector needs fastapi and uvicorn: pip install 'flowstate[service]'"
            )

        return
    app.command("serve")(serve_command)
    app.command("ui")(ui_command)
