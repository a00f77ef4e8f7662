"""What running and inspecting a graph return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ._interrupts import PendingInterrupt

__all__ = ["HistoryEntry", "RunResult"]

S = TypeVar("S", bound=BaseModel)


@dataclass
class RunResult(Generic[S]):
    """What a run, resume or fork returns."""

    run_id: str
    status: str
    """completed | paused | cancelled (a failure raises NodeFailed instead)."""
    state: S
    reason: str | None = None
    """Why the run paused (interrupt, breakpoint, limit) or was cancelled."""
    step: int = 0
    interrupts: list[PendingInterrupt] = field(default_factory=list)
    """The interrupts waiting for an answer (subgraphs' included), in task order, each
    with its stable ``id``, ``node``, ``task_path`` and ``payload``."""


@dataclass
class HistoryEntry:
    """One committed activation of a run, or an edit of its state."""

    step: int
    node: str
    task_path: str
    update: dict[str, Any]
    effects: int
    started_at: float
    finished_at: float
    run_id: str
    """The run the activation belongs to (a subgraph child run for nested entries)."""
    depth: int = 0
    """0 for the run's own activations, 1 for a subgraph's, 2 for a sub-subgraph's …"""
    usage: dict[str, int] = field(default_factory=dict)
    """LLM tokens used by the activation."""
    edit: bool = False
    """An edit (``update_state``, ``resume(update=...)``) rather than an activation: its
    ``node`` is the ``as_node`` it was made as, or ``__edit__``."""
    by: str | None = None
    """Who made the edit, as given to ``update_state(by=...)``."""

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at) * 1000
