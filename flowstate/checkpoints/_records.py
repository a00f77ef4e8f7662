"""The rows a checkpoint store holds, as validated pydantic records.

Stores know nothing of node code or state models: payload columns (``input``,
``update``, ``snapshot``, ``request``, ``response`` …) are JSON text produced by
pydantic. The engine validates them against the graph's own state model when it reads
them back, so the type of every value always comes from code, never from a row.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "CHECKPOINT_FORMAT",
    "TERMINAL_STATUSES",
    "AttemptRecord",
    "EffectRecord",
    "InterruptRecord",
    "RunRecord",
    "RunStatus",
    "StepRecord",
    "ThreadRecord",
    "WriteRecord",
    "row_hash",
]

CHECKPOINT_FORMAT = 1
"""Version of the on-disk format. Bumped only together with a registered migration."""

RunStatus = Literal[
    "queued",  # created by the service, not yet picked up by a worker
    "running",  # being executed, or its process died mid-run (resume it)
    "paused",  # stopped on purpose: interrupt, breakpoint, pause request or a limit
    "completed",  # reached END; the final state is in the store
    "failed",  # a node raised or returned an invalid update; resumable after a fix
    "cancelled",  # cancelled by a caller; resumable
    "dead",  # dead letter: the fleet gave up after max_attempts; `flowstate requeue` retries
]

TERMINAL_STATUSES: frozenset[str] = frozenset({"completed"})
"""Statuses from which ``resume`` has nothing left to do."""

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class RunRecord(BaseModel):
    """One run of a graph (a row of ``runs``)."""

    model_config = _STRICT

    id: str
    """Run id; child runs of subgraph activations are ``parent/step/task``."""
    graph: str
    """Name of the graph the run executes."""
    fingerprint: str
    """sha256 of the graph document below."""
    graph_doc: str
    """JSON description of nodes, edges and state schema, used to diff graphs on resume."""
    status: RunStatus
    input: str
    """The input state as JSON."""
    head_step: int = 0
    """The step the run is at (its latest step row)."""
    error: str | None = None
    """Why the run failed, or why it is paused (interrupt, breakpoint, limit)."""
    parent_id: str | None = None
    """The run this one was forked from, or the parent run of a subgraph activation."""
    parent_step: int | None = None
    """The step of the parent it was forked at."""
    config: str = "{}"
    """Run options as JSON (max_steps, breakpoints …), kept so resume uses them."""
    created_at: float
    updated_at: float
    thread_id: str | None = None
    """The thread this run is a turn of (a conversation: a sequence of runs over one
    evolving state), or None for a run on no thread."""
    turn: int | None = None
    """Its turn number on the thread, from 1 (unique per thread). A queued turn's
    ``input`` is the turn's own input, applied to the previous turn's final state when it
    starts; every turn's step 0 holds the state it started from."""


class ThreadRecord(BaseModel):
    """A thread as the store lists it: its id and how many turns it has (not a table: an
    aggregate over the ``runs`` rows that carry ``thread_id``)."""

    model_config = _STRICT

    thread_id: str
    turns: int
    """Number of turns stored (queued ones included)."""
    created_at: float
    """When its first turn was created."""
    last_at: float
    """When its latest turn was created."""


class StepRecord(BaseModel):
    """A step boundary (a row of ``steps``): what runs in the step, from which state."""

    model_config = _STRICT

    run_id: str
    step: int
    tasks: str
    """JSON list of the step's activations, in merge order."""
    joins: str = "{}"
    """JSON map of join barriers to the sources they have seen so far."""
    snapshot: str | None = None
    """The full input state of the step as JSON, when a snapshot was taken here."""
    created_at: float


class WriteRecord(BaseModel):
    """One committed activation (a row of ``writes``)."""

    model_config = _STRICT

    run_id: str
    step: int
    task_path: str
    """Identity of the activation within its step (node name, or ``node[i]`` for sends)."""
    node: str
    seq: int
    """Position of the activation in the step's merge order. Negative for an edit of the
    step's input (``update_state``: task path ``__edit__.<n>``), which sorts first."""
    update: str
    """The validated update as JSON (field → value, before reducers are applied)."""
    goto: str = "[]"
    """JSON list of targets chosen by a ``Command``."""
    usage: str = "{}"
    """JSON map of LLM token usage made by the activation."""
    started_at: float
    finished_at: float


class EffectRecord(BaseModel):
    """One journaled effect (a row of ``effects``)."""

    model_config = _STRICT

    run_id: str
    step: int
    task_path: str
    seq: int
    """Order of the effect within its activation, from 0."""
    name: str
    request: str
    """JSON of the effect's name-qualified arguments."""
    response: str
    """JSON of the effect's result."""
    created_at: float


class InterruptRecord(BaseModel):
    """A pending or answered interrupt (a row of ``interrupts``)."""

    model_config = _STRICT

    run_id: str
    step: int
    task_path: str
    seq: int
    payload: str
    """JSON payload the node passed to ``ctx.interrupt``."""
    answer: str | None = None
    """JSON value given to ``resume``; ``None`` while pending."""
    created_at: float


class AttemptRecord(BaseModel):
    """A failed attempt of an activation (a row of ``attempts``)."""

    model_config = _STRICT

    run_id: str
    step: int
    task_path: str
    attempt: int
    error: str
    created_at: float


def row_hash(*parts: object) -> str:
    """Integrity hash of a row: sha256 over its key and payload columns."""
    text = "\x1f".join(["\x00" if p is None else str(p) for p in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:32]
