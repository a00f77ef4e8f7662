"""What the scheduler keeps of an activation and returns of a run, and the JSON form of
``Command`` targets stored with each write."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from pydantic import BaseModel

from flowstate.checkpoints import WriteRecord

from ._rows import parse
from ._types import Send, Task

__all__ = ["Committed", "Failure", "Outcome", "Ready", "goto_from_json", "goto_to_json"]


@dataclass
class Ready:
    """An activation that finished and whose update passed validation, not yet committed."""

    task: Task
    update: dict[str, Any]
    """The validated update (field -> value)."""
    raw: str
    """The update as stored (JSON)."""
    goto: list[str | Send]
    """Targets of a returned ``Command`` (empty when the edges decide)."""
    started: float
    usage: dict[str, int]
    """LLM tokens the activation used."""
    memory_ops: list[Any]
    """Memory writes to apply in the commit's transaction."""


@dataclass
class Committed:
    """An activation whose write row is stored."""

    task: Task
    write: WriteRecord
    update: dict[str, Any]
    goto: list[str | Send]


@dataclass
class Outcome:
    """How an execution ended (a failure raises ``NodeFailed`` instead)."""

    status: str
    state: BaseModel
    reason: str | None = None
    step: int = 0
    interrupts: list[Any] = field(default_factory=list)


def goto_to_json(goto: list[str | Send]) -> str:
    items = [
        {"node": g.node, "payload": pydantic_core.to_jsonable_python(g.payload)}
        if isinstance(g, Send)
        else g
        for g in goto
    ]
    return json.dumps(items)


def goto_from_json(raw: str, run_id: str = "?", step: int | None = None) -> list[str | Send]:
    return [
        Send(g["node"], g.get("payload")) if isinstance(g, dict) else str(g)
        for g in parse("goto", raw, "writes", run_id, step)
    ]


@dataclass
class Failure:
    """A node's failure, carried out of its activation to the step (never raised)."""

    task: Task
    exc: BaseException
