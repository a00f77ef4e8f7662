"""The planners' types: plan steps and plans, run states, and the payloads of `Send`."""

from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel

from flowstate.engine import append

PlanStatus: TypeAlias = Literal["pending", "in_progress", "completed", "failed"]
"""Where a plan step stands.

- `"pending"`: not started.
- `"in_progress"`: sent to the executor; its result has not been applied yet.
- `"completed"`: the executor succeeded; `PlanStep.result` holds its result.
- `"failed"`: the executor failed; `PlanStep.result` says why.
"""

PlannerStatus: TypeAlias = Literal["planning", "executing", "completed", "failed"]
"""Where a planner run stands.

- `"planning"`: making (or repairing) the plan.
- `"executing"`: running the plan's steps.
- `"completed"`: every step completed; `PlannerState.answer` holds the result.
- `"failed"`: a step failed (or the model gave no usable plan) and no replan was left;
  `PlannerState.error` says why.
"""

MAX_PLAN_STEPS = 20
"""Default cap on the steps of one plan: a longer plan is sent back to the model."""


class PlanStep(BaseModel):
    """One step of a plan."""

    id: int
    """The step's number; unique in the plan and kept when the plan is repaired."""
    description: str
    """What to do."""
    status: PlanStatus = "pending"
    """Where the step stands."""
    result: str | None = None
    """The executor's result (or its error, for a failed step)."""
    depends_on: list[int] = []
    """Ids of the steps whose results this one needs; it runs once they have completed."""


class Plan(BaseModel):
    """An ordered list of steps with dependencies (a DAG)."""

    steps: list[PlanStep] = []
    """The steps, in the order they were planned."""

    def get(self, step_id: int) -> PlanStep | None:
        """The step with this id, or None."""
        return next((s for s in self.steps if s.id == step_id), None)

    def ready(self) -> list[PlanStep]:
        """Pending steps whose dependencies have all completed, in plan order."""
        done = {s.id for s in self.steps if s.status == "completed"}
        return [s for s in self.steps if s.status == "pending" and set(s.depends_on) <= done]

    def ancestors(self, step_id: int) -> list[PlanStep]:
        """The steps `step_id` depends on, directly or not, in plan order."""
        wanted: set[int] = set()
        start = self.get(step_id)
        todo = list(start.depends_on) if start is not None else []
        while todo:
            i = todo.pop()
            if i not in wanted:
                wanted.add(i)
                step = self.get(i)
                todo.extend(step.depends_on if step else [])
        return [s for s in self.steps if s.id in wanted]

    @property
    def done(self) -> bool:
        """True when every step has completed (and there is at least one)."""
        return bool(self.steps) and all(s.status == "completed" for s in self.steps)

    def next_id(self) -> int:
        """An id no step of this plan uses (one more than the largest)."""
        return max((s.id for s in self.steps), default=0) + 1


class StepOutcome(BaseModel):
    """What the executor returned for one step."""

    step_id: int
    """The step it ran."""
    success: bool
    """Whether the step succeeded."""
    result: str
    """Its result, or why it failed."""


class PlannerState(BaseModel):
    """State of a planner run. Only `goal` is required as input."""

    goal: str
    """What the plan must achieve."""
    plan: Plan = Plan()
    """The current plan and the status of each step."""
    status: PlannerStatus = "planning"
    """Where the run stands (see `PlannerStatus`)."""
    answer: str | None = None
    """The result once every step completed: the result of the last step, or of every step
    nothing depends on (one per line) when there are several."""
    error: str | None = None
    """Why the run failed."""
    replans: int = 0
    """How many times the model was asked for a new plan (bounded by `max_replans`)."""
    feedback: str | None = None
    """Why the model's last plan was refused (no list, too long, invalid dependencies);
    shown to it when it plans again. Failed steps are shown from the plan itself."""
    outcomes: Annotated[list[StepOutcome], append] = []
    """Every executor result, in the order they arrived (failed attempts included)."""
    applied: int = 0
    """How many `outcomes` have been applied to the plan."""
    exec_step_id: int = 0
    """Internal: the step id a graph executor's Send carries (unused in the state itself)."""
    exec_task: str = ""
    """Internal: the task text a graph executor's Send carries."""
    exec_context: str = ""
    """Internal: the context a graph executor's Send carries."""


class TaskNode(BaseModel):
    """A task in the hierarchical planner's decomposition tree."""

    path: str
    """Its position: `"2"` is the root's second subtask, `"2.1"` that one's first."""
    parent: str
    """The parent's path (`""` for the root goal)."""
    description: str
    """What to do."""
    depth: int
    """1 for the root's subtasks, 2 for theirs, …"""
    complex: bool = False
    """Whether the model judged it complex (it is then decomposed, within max_depth)."""


class HierarchicalState(PlannerState):
    """State of a hierarchical planner run: a `PlannerState` plus the decomposition tree."""

    tree: Annotated[list[TaskNode], append] = []
    """Every subtask found, level by level; the leaves, in path order, become the plan."""
    level: int = 0
    """Internal: the tree level being decomposed."""


class StepJob(BaseModel):
    """What `execute` receives for one step when the executor is a function."""

    step_id: int
    """The step's id."""
    description: str
    """What to do."""
    context: str
    """The goal and the results of the steps it builds on."""


class DecomposeJob(BaseModel):
    """What `decompose` receives: one task to break into subtasks."""

    path: str
    """The task's path in the tree (`""` for the root goal)."""
    description: str
    """The task."""
    depth: int
    """Its depth (0 for the root goal)."""
    lineage: list[str] = []
    """Descriptions of the tasks above it, root first."""
