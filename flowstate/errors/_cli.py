"""Command-line and fleet configuration errors (FS4xx, FS23x)."""

from __future__ import annotations

from ._base import ConfigError, FlowstateError


class CLIError(FlowstateError):
    """The command line was given something it cannot use: an option, JSON, a file."""

    code = "FS400"


class GraphLoadError(CLIError):
    """``module:attr`` (or ``path.py:attr``) does not name a graph or registry to load."""

    code = "FS401"


class DatabaseNotFound(CLIError):
    """A command that reads runs found no checkpoint database where it looked."""

    code = "FS402"


class QueueUnavailable(ConfigError):
    """The fleet (``enqueue``, ``flowstate worker``) needs a store with a run queue: a
    database its processes share (an SQLite file, or PostgreSQL)."""

    code = "FS230"

    def __init__(self, store: object, reason: str | None = None) -> None:
        self.store = store
        super().__init__(
            f"{store!r} has no run queue: "
            + (
                reason
                or "the fleet (enqueue, flowstate worker) needs a database its processes "
                "share: an SQLite file for several processes on one machine (--db runs.db) "
                "or PostgreSQL for several machines (--db postgresql://...)"
            )
        )


class NoWorkerGraphs(ConfigError):
    """A worker was started without any graph to run."""

    code = "FS231"

    def __init__(self, target: str) -> None:
        super().__init__(
            f"'{target}' holds no graphs: a worker needs at least one graph to run; point "
            "--graphs at a GraphRegistry, a dict or a list of compiled graphs"
        )
