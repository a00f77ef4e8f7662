"""Run context for ``logging``: every record made while a run executes can carry its run
id, step, node and task path.

The engine binds the context in contextvars (one set per run and per activation), so it
follows the code into ``asyncio`` tasks and ``asyncio.to_thread`` calls without being
passed around. ``RunContextFilter`` copies it onto log records; flowstate's own loggers
carry the filter, and users add it to their handlers to tag the records of their nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import NamedTuple

__all__ = ["LogContext", "RunContextFilter", "bind_log_context", "get_logger", "log_context"]


class LogContext(NamedTuple):
    """Where the code that is logging runs."""

    run_id: str
    """The run (a subgraph's child run is ``parent/step/task``)."""
    step: int | None
    """The step of the activation, or None outside an activation."""
    node: str | None
    """The node of the activation, or None outside an activation."""
    task_path: str | None
    """The activation's task path (differs from the node for Send fan-outs)."""
    attempt: int | None
    """1 on the first attempt, 2 on the first retry, …"""


Bound = tuple[str, int | None, str | None, str | None, int | None]
"""A ``LogContext`` as the engine binds it: a plain tuple (no Python-level constructor
on the per-activation path)."""

_CONTEXT: ContextVar[Bound | None] = ContextVar("flowstate_log_context", default=None)


def log_context() -> LogContext | None:
    """The run context of the calling code, or None outside a run."""
    c = _CONTEXT.get()
    return None if c is None else LogContext(*c)


bind_log_context: Callable[[Bound], Token[Bound | None]] = _CONTEXT.set
"""Bind ``(run_id, step, node, task_path, attempt)`` (the engine calls this once per run
and per activation; a C-level call, so it costs next to nothing); returns the token."""

reset_log_context: Callable[[Token[Bound | None]], None] = _CONTEXT.reset
"""Undo a ``bind_log_context`` with its token."""


class RunContextFilter(logging.Filter):
    """Adds ``run_id``, ``step``, ``node`` and ``task_path`` to every record it sees (None
    outside a run; attributes a record already has are kept). Never drops a record.

    Attach it to a handler so the records of your own nodes carry them too::

        handler.addFilter(RunContextFilter())
        handler.setFormatter(logging.Formatter("%(run_id)s %(step)s %(node)s %(message)s"))
    """

    def filter(self, record: logging.LogRecord) -> bool:
        c = _CONTEXT.get() or _NONE
        d = record.__dict__
        for i, key in enumerate(_KEYS):
            if key not in d:
                d[key] = c[i]
        return True


_KEYS = ("run_id", "step", "node", "task_path")
_NONE: Bound = (None, None, None, None, None)  # type: ignore[assignment]
_FILTER = RunContextFilter()


def get_logger(name: str) -> logging.Logger:
    """A flowstate logger whose records always carry the run context."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
