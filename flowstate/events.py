"""The typed events a run emits (``app.stream``, ``on_event=``, the service's SSE).

Each is a pydantic model with a ``kind`` discriminator; ``EventAdapter`` parses any of them
from JSON.

Events are a live view, not the durable log: the durable record is what the store
committed. Every event carries the run id and, where it applies, the step and task path.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

__all__ = [
    "EffectRecorded",
    "Event",
    "EventAdapter",
    "NodeFailedEvent",
    "NodeFinished",
    "NodeRetrying",
    "NodeStarted",
    "RunFinished",
    "RunStarted",
    "StepFinished",
    "Token",
]


class _Base(BaseModel):
    run_id: str
    at: float = Field(default_factory=time.time)


class RunStarted(_Base):
    kind: Literal["run_started"] = "run_started"
    graph: str
    resumed: bool = False
    step: int = 0


class NodeStarted(_Base):
    kind: Literal["node_started"] = "node_started"
    step: int
    node: str
    task_path: str
    attempt: int = 1


class NodeFinished(_Base):
    kind: Literal["node_finished"] = "node_finished"
    step: int
    node: str
    task_path: str
    update: dict[str, Any]
    duration_ms: float
    usage: dict[str, int] = {}
    """LLM tokens of the activation; a subgraph's activation counts its whole child run."""


class NodeRetrying(_Base):
    kind: Literal["node_retrying"] = "node_retrying"
    step: int
    node: str
    task_path: str
    attempt: int
    error: str
    delay: float


class NodeFailedEvent(_Base):
    kind: Literal["node_failed"] = "node_failed"
    step: int
    node: str
    task_path: str
    error: str


class EffectRecorded(_Base):
    kind: Literal["effect_recorded"] = "effect_recorded"
    step: int
    task_path: str
    seq: int
    name: str
    replayed: bool
    diverged: bool = False
    """On resume, the request differed from the journaled one: the effect ran live and its
    new result replaced the record (also recorded in the run's attempts)."""


class Token(_Base):
    kind: Literal["token"] = "token"
    step: int
    task_path: str
    text: str


class StepFinished(_Base):
    kind: Literal["step_finished"] = "step_finished"
    step: int
    nodes: list[str]
    next: list[str]
    state: dict[str, Any] | None = None


class RunFinished(_Base):
    kind: Literal["run_finished"] = "run_finished"
    status: str
    reason: str | None = None
    usage: dict[str, int] = {}
    """LLM tokens of the run so far, its subgraphs' included (when it is known)."""


Event = Annotated[
    RunStarted
    | NodeStarted
    | NodeFinished
    | NodeRetrying
    | NodeFailedEvent
    | EffectRecorded
    | Token
    | StepFinished
    | RunFinished,
    Field(discriminator="kind"),
]
EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
