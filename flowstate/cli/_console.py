"""The consoles every command prints to, and whether tracebacks were asked for."""

from __future__ import annotations

import os

from rich.console import Console

console = Console(soft_wrap=True)
"""stdout: results."""
err_console = Console(stderr=True, soft_wrap=True)
"""stderr: errors, warnings, and what ``-v`` says."""

_debug_flag = False
"""Set while a command given ``--debug`` runs."""


def set_debug(on: bool) -> None:
    """Turn tracebacks on (``--debug``) for the command being run, or off after it."""
    global _debug_flag
    _debug_flag = on


def debug_requested() -> bool:
    """Whether errors should show their traceback: ``--debug`` or ``FLOWSTATE_DEBUG=1``."""
    return _debug_flag or os.environ.get("FLOWSTATE_DEBUG", "") not in ("", "0")
