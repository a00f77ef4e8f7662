"""The wire format of the task API: pydantic request and response models.

Requests are ``extra="forbid"``: an unknown field is a 422 naming it, never silently
ignored. The create-task body is built per app (``create_task_model``): a union over the
registered graphs, discriminated by ``graph``, whose ``input`` is that graph's own state
model, so the OpenAPI document states exactly what each graph accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model, field_validator

__all__ = [
    "GRAPH_NAME_PATTERN",
    "TASK_ID_PATTERN",
    "CreateTaskFields",
    "GraphInfo",
    "Health",
    "Interrupt",
    "Problem",
    "ProblemItem",
    "ResumeTask",
    "StepEntry",
    "TaskDetail",
    "TaskPage",
    "TaskRef",
    "TaskStatus",
    "TaskSummary",
    "create_task_model",
]

TaskStatus = Literal["queued", "running", "paused", "completed", "failed", "cancelled", "dead"]
"""A task's status is its run's status in the store (see ``flowstate.checkpoints.RunStatus``).
``queued``: accepted and durable, waiting for a free slot (``max_concurrent_runs``) or a
fleet worker; ``dead``: dead-lettered by the fleet after its ``max_attempts``."""

TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
"""Task ids are run ids. Subgraph child runs (``parent/step/task``) are not tasks."""
GRAPH_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"

_REQUEST = ConfigDict(extra="forbid")


def _encodable(v: str | None) -> str | None:
    if v is not None:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the text is not valid Unicode (it has a lone surrogate)") from None
    return v


class CreateTaskFields(BaseModel):
    """Fields every create-task body has; ``graph`` and ``input`` are added per graph."""

    model_config = _REQUEST

    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Bound on the number of node activations; reaching it pauses the task "
        "(default: the graph's own max_steps).",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The same key always names the same task: a repeated request returns "
        "it (200) instead of starting another. Reusing a key with a different graph, input "
        "or max_steps is a 409.",
    )

    _check_key = field_validator("idempotency_key")(_encodable)


def create_task_model(states: dict[str, type[BaseModel]]) -> type[RootModel[Any]]:
    """The create-task body for these graphs: ``{"graph": name, "input": <its state>}``."""
    variants = []
    for name, state in sorted(states.items()):
        graph_name: Any = Literal[name]  # a Literal of a runtime value
        variants.append(
            create_model(
                f"CreateTask_{name}",
                __base__=CreateTaskFields,
                __doc__=f"Start a task of graph '{name}'.",
                graph=(graph_name, Field(description="The registered graph to run.")),
                input=(
                    state,
                    Field(description=f"The initial state of '{name}' ({state.__name__})."),
                ),
            )
        )
    root: Any
    if len(variants) == 1:
        root = variants[0]
    else:
        root = Annotated[Union[tuple(variants)], Field(discriminator="graph")]  # noqa: UP007
    return create_model("CreateTask", __base__=RootModel[root])


class ResumeTask(BaseModel):
    """Continue a paused, failed or cancelled task."""

    model_config = _REQUEST

    value: Any = Field(
        default=None,
        description="The answer to the task's one pending interrupt (any JSON, null "
        "included); refused (409) when several are pending: use `answers`. Omit it to "
        "resume without answering (a failed or cancelled task, a breakpoint).",
    )
    answers: dict[str, Any] | None = Field(
        default=None,
        description="Answers keyed by interrupt id (see the task's `interrupts`): any "
        "subset of the pending interrupts; the others stay pending.",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="A new activation bound for this resume (for a task paused at its limit).",
    )
    update: dict[str, Any] | None = Field(
        default=None,
        description="Edit the task's state first: fields validated like a node's update "
        "and merged through the reducers, recorded and replayed (422 when the state "
        "refuses it).",
    )
    goto: list[str] | None = Field(
        default=None,
        description="Continue at these nodes instead of the pending activations (409 "
        "with an answer, whose activation it would drop).",
    )
    rerun_step: bool = Field(
        default=False,
        description="Run the head step's activations again, committed ones included "
        "(after fixing a node whose update made the step's close fail, FS216); their "
        "superseded writes stay visible as attempts.",
    )


class TaskRef(BaseModel):
    id: str = Field(description="The task id (the run id in the checkpoint store).")
    status: TaskStatus


class StepEntry(BaseModel):
    """One committed activation, from the checkpoint store."""

    step: int
    node: str
    task_path: str
    update: dict[str, Any] = Field(description="The validated update the node committed.")
    effects: int = Field(description="Number of journaled effects of the activation.")
    started_at: float
    finished_at: float
    duration_ms: float


class Interrupt(BaseModel):
    """An interrupt waiting for ``POST /v1/tasks/{id}/resume {"answers": {id: ...}}``."""

    id: str = Field(
        description="Stable id, `step:task_path:seq` (prefixed with `step:task_path/` per "
        "subgraph level): the key of `answers` in a resume."
    )
    node: str = Field(description="The node that asked.")
    step: int
    task_path: str
    seq: int = Field(description="Order within the activation, from 0.")
    payload: Any = Field(description="What the node passed to ctx.interrupt(payload).")
    deadline: float | None = Field(
        None,
        description="When it times out (Unix seconds), for ctx.interrupt(..., timeout=...): "
        "unanswered then, the node continues with its default.",
    )


class TaskSummary(BaseModel):
    id: str
    graph: str
    status: TaskStatus
    reason: str | None = Field(
        default=None, description="Why it paused or was cancelled (``timeout`` on a timeout)."
    )
    error: str | None = Field(default=None, description="Why it failed.")
    head_step: int
    created_at: float
    updated_at: float
    duration_ms: float | None = Field(
        default=None, description="From creation to the last change (in lists)."
    )
    activations: int | None = Field(default=None, description="Committed activations (in lists).")
    tokens: int | None = Field(default=None, description="LLM tokens, input + output (in lists).")
    cost_usd: float | None = Field(
        default=None, description="LLM cost from the run's token prices, when set (in lists)."
    )


class TaskDetail(TaskSummary):
    state: dict[str, Any] | None = Field(
        description="The current state (the final state once completed); null when the "
        "graph is not served by this server."
    )
    steps: list[StepEntry] = Field(description="Every committed activation, in order.")
    interrupts: list[Interrupt] = Field(description="Pending interrupts, with their payloads.")
    usage: dict[str, int] = Field(
        default_factory=dict,
        description="LLM tokens of the task's committed activations, its subgraphs' included "
        "(`input_tokens`, `output_tokens`).",
    )


class TaskPage(BaseModel):
    items: list[TaskSummary]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class GraphInfo(BaseModel):
    name: str
    nodes: list[str]
    input_schema: dict[str, Any] = Field(description="JSON schema of the graph's state.")


class Health(BaseModel):
    status: Literal["ok"]


class ProblemItem(BaseModel):
    loc: list[str | int] = Field(description="Where: e.g. ['body', 'input', 'question'].")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 7807 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    code: str | None = Field(default=None, description="flowstate error code, e.g. FS206.")
    errors: list[ProblemItem] | None = None
