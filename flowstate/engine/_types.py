"""Reserved names, routing values and the identity of an activation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, NewType, TypeVar

__all__ = ["END", "START", "Command", "NodeName", "RunId", "Send", "Task", "TaskPath"]

START = "__start__"
"""The entry point of every graph: ``add_edge(START, "first")``."""
END = "__end__"
"""The exit: a path that reaches END stops; the run completes when no activation is left."""

RunId = NewType("RunId", str)
"""Identifier of a run; child runs of subgraph activations are ``parent/step/task``."""
NodeName = NewType("NodeName", str)
TaskPath = NewType("TaskPath", str)
"""Identity of an activation within its step: ``node``, or ``node[i]`` for the i-th Send."""

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    """Route one activation of ``node`` whose input is ``payload`` instead of the state.

    A router returning several Sends fans out one activation per item (map-reduce); their
    updates merge through the state's reducers in the order the items were sent.
    """

    node: str
    payload: Any = None


@dataclass(frozen=True)
class Command(Generic[T]):
    """A node result that both updates the state and chooses where to go next.

    The possible ``goto`` targets must be declared when the node is added
    (``add_node(fn, goto=[...])``) so that compile-time validation sees every edge.
    """

    update: Any = None
    goto: str | Send | list[str | Send] = field(default_factory=list)


@dataclass(frozen=True)
class Task:
    """One planned activation: which node, its identity in the step, its input payload."""

    node: str
    path: str
    payload: Any = None
    """JSON-compatible payload of a Send, or None for an activation that reads the state."""
    send: bool = False

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"node": self.node, "path": self.path}
        if self.send:
            d["send"] = True
            d["payload"] = self.payload
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Task:
        return cls(
            node=str(d["node"]),
            path=str(d["path"]),
            payload=d.get("payload"),
            send=bool(d.get("send", False)),
        )
