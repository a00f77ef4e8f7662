"""The wire format of the inspector endpoints: a run's overview, its paged timeline, the
state at a step with its diff, an activation's effects journal, fork and replay.

These are read models over the checkpoint store; the inspector page (``/ui``) renders
nothing the API does not return, so a script sees exactly what a person sees.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._models import TaskStatus

__all__ = [
    "ActivationEntry",
    "DiffItem",
    "EffectEntry",
    "EffectsPage",
    "ForkTask",
    "InterruptEntry",
    "NodeStatus",
    "NodeView",
    "ReplayOutcome",
    "RunLink",
    "RunOverview",
    "StateAtStep",
    "TimelinePage",
]

NodeStatus = Literal["ran", "running", "failed", "paused", "interrupted", "never_reached"]
"""What happened to a node in a run: ``ran`` (committed at least once and not waiting),
``running`` (in the step being executed), ``failed`` (the run failed in this node),
``paused`` (a breakpoint or pause request stopped the run before or after it),
``interrupted`` (its interrupt waits for an answer), ``never_reached`` (no activation)."""


class NodeView(BaseModel):
    name: str
    kind: Literal["node", "subgraph"]
    visits: int = Field(description="Committed activations of this node in the run.")
    status: NodeStatus


class RunLink(BaseModel):
    """A related run: the parent a fork came from, a fork, or a subgraph's child run."""

    id: str
    relation: Literal["fork_parent", "fork", "subgraph_parent", "subgraph"]
    status: str
    step: int | None = Field(
        default=None,
        description="The parent step the fork starts at, or the step of the "
        "activation that ran the subgraph.",
    )


class InterruptEntry(BaseModel):
    """An interrupt of the run, pending or answered."""

    id: str = Field(
        description="Stable id, `step:task_path:seq` (prefixed with `step:task_path/` per "
        "subgraph level): the key of `answers` in a resume."
    )
    step: int
    task_path: str
    node: str
    seq: int
    payload: Any
    answered: bool
    answer: Any = None
    deadline: float | None = None
    """When a pending interrupt times out (Unix seconds), if it has a timeout."""


class RunOverview(BaseModel):
    """Everything the run page shows at once; the timeline and states are paged apart."""

    id: str
    graph: str
    status: TaskStatus
    reason: str | None = None
    error: str | None = None
    head_step: int
    created_at: float
    updated_at: float
    duration_ms: float
    activations: int = Field(description="Committed activations (nested runs excluded).")
    tokens: dict[str, int]
    cost_usd: float | None = Field(
        description="From the run's token prices (Limits.input/output_price_per_mtok); null "
        "when no price was set."
    )
    nodes: list[NodeView]
    svg: str = Field(description="The graph drawn as SVG, nodes coloured by status.")
    mermaid: str = Field(description="The graph as Mermaid flowchart text.")
    interrupts: list[InterruptEntry]
    links: list[RunLink]
    head_tasks: list[str] = Field(description="Activations planned for the head step.")
    actions: bool = Field(
        description="Whether this server can act on the run (it serves the run's graph)."
    )


class ActivationEntry(BaseModel):
    """One committed activation in the timeline."""

    step: int
    node: str
    task_path: str
    started_at: float
    finished_at: float
    duration_ms: float
    attempts: int = Field(description="Failed attempts before the one that committed, plus one.")
    tokens: dict[str, int]
    effects: int
    writes: list[str] = Field(description="State fields the activation's update wrote.")
    child_run: str | None = Field(default=None, description="The subgraph run it started.")


class TimelinePage(BaseModel):
    run_id: str
    head_step: int
    start: int = Field(description="First step of this page.")
    stop: int = Field(description="One past the last step of this page.")
    items: list[ActivationEntry]
    next_start: int | None = Field(description="?start= of the next page; null at the end.")


class DiffItem(BaseModel):
    path: str = Field(description="JSON-pointer-like path: 'field', 'field/0', 'field/key'.")
    op: Literal["add", "remove", "change"]
    before: Any = None
    after: Any = None


class StateAtStep(BaseModel):
    run_id: str
    step: int
    exact: bool = Field(
        description="True: the state rebuilt with the graph's reducers. False (a read-only "
        "inspector without the graph's code): the nearest snapshot, with the updates after "
        "it in `pending_updates`."
    )
    snapshot_step: int
    state: dict[str, Any]
    pending_updates: list[dict[str, Any]] = []
    previous_step: int | None
    diff: list[DiffItem] = Field(description="From the state at the previous step to this one.")


class EffectEntry(BaseModel):
    seq: int
    name: str
    kind: Literal["llm", "tool", "effect"]
    request: Any
    response: Any
    created_at: float


class EffectsPage(BaseModel):
    run_id: str
    step: int
    task_path: str
    items: list[EffectEntry]


class ForkTask(BaseModel):
    """Start a new task from the state at the start of step ``at``, patched."""

    model_config = ConfigDict(extra="forbid")

    at: int = Field(ge=0, le=100_000_000, description="The step to fork at (0: the input).")
    update: dict[str, Any] | None = Field(
        default=None,
        description="A state patch applied through the reducers, validated like a node's update.",
    )


class EditTaskState(BaseModel):
    """Edit a stopped task's state in place (``update_state``): recorded in its history and
    replayed; with ``as_node`` the edit routes as that node's write."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, Any] = Field(
        description="State fields, validated like a node's update and merged through the "
        'reducers (`{"field": {"__overwrite__": value}}` replaces a reducer field).',
    )
    as_node: str | None = Field(
        default=None,
        max_length=200,
        description="Count the edit as this node's write: the task continues from its edges.",
    )
    by: str | None = Field(
        default=None, max_length=200, description="Who made the edit (kept in the history)."
    )


class ReplayOutcome(BaseModel):
    """The replay report: identical, or the first divergence with its field diff."""

    run_id: str
    identical: bool
    activations: int
    recorded_status: str
    replay_status: str
    summary: str
    first_divergence: dict[str, Any] | None = None
