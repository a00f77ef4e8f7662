"""Base of the tree, the configuration errors and the resume hint every message may give."""

from __future__ import annotations

RESUME_GRAPH_PLACEHOLDER = "--graph MODULE:ATTR"
"""Stands for the graph in a resume hint; the CLI replaces it with the ``--graph`` (and
``--db``) it was given, so its hint is a command that works as printed."""


def resume_hint(run_id: str) -> str:
    """How to continue run ``run_id``, from the shell and from Python."""
    return (
        f"`flowstate resume {run_id} {RESUME_GRAPH_PLACEHOLDER}` (Python: `app.resume({run_id!r})`)"
    )


class FlowstateError(Exception):
    """Base class of every flowstate error."""

    code: str = "FS000"
    """Stable code, documented in the error table (``FS1xx`` graphs, ``FS2xx`` runs, ``FS3xx``
    storage)."""

    retryable: bool = False
    """Whether trying the same thing again may succeed (a transient fault, not a bug): the
    default retry policy retries exactly the errors that say so."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its attributes, not by calling ``__init__`` again: subclasses take
        # their own arguments (a graph and its problems, a run id), and the stored ``args``
        # already carry the code, which a second ``__init__`` would prefix again.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[FlowstateError], args: tuple[object, ...], state: dict[str, object]
) -> FlowstateError:
    """Unpickle a flowstate error: same class, message, attributes and code."""
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class GraphBuildError(FlowstateError):
    """The graph is invalid. ``problems`` lists every problem found, each with its fix."""

    code = "FS101"

    def __init__(self, graph: str, problems: list[str]) -> None:
        self.graph = graph
        self.problems = list(problems)
        n = len(problems)
        lines = "\n".join(f"  ({i}) {p}" for i, p in enumerate(problems, 1))
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in graph '{graph}':\n{lines}")


class TargetError(FlowstateError, ValueError):
    """A ``module:attr`` target cannot be imported or lacks the attribute."""

    code = "FS102"


class ConfigError(FlowstateError, ValueError):
    """A setting or argument is invalid (a durability, a schema name, a run field); the
    message names it and the values it may take. Also a ``ValueError``."""

    code = "FS103"
