"""Plan-and-execute graphs: `sequential_planner`, `hierarchical_planner`, `dag_planner`.

All three share one execution loop over a typed `Plan`:

    plan ──→ dispatch ──Send──→ execute ──→ dispatch ──→ … ──→ END
      ↑          │ a step failed: replan with the feedback (bounded by max_replans)
      └──────────┘

`dispatch` applies the executors' results to the plan, then sends every step whose
dependencies are done to `execute` (one activation per step, with the step as payload: the
sequential and hierarchical plans chain their steps, so one runs at a time; a DAG runs every
ready step in parallel), and ends the run when the plan is done or cannot be repaired.

The executor is pluggable (`Executor`): an async function `(description, context) ->
(success, result)`, run as one journaled effect per step, or a graph (compiled or not) run as a
subgraph per step — by default `react_agent(llm)`. Every model call of the planners goes
through `JournaledLLM` with the node's context, so a resumed run never calls the model for a
turn that already happened and `replay` calls nothing.

    app = dag_planner(llm, executor=my_executor).compile(store="runs.db")
    result = app.run_sync({"goal": "Compare the populations of Lyon and Nantes"})
    result.state.status, result.state.answer, result.state.plan.steps

The implementation is split by job: `_planner_models` (the types), `_planner_prompts`,
`_planner_loop` (the shared dispatch loop), `_planner_executors` (the `execute` node), and
one module per planner (`_planner_sequential`, `_planner_hierarchical`, `_planner_dag`).
This module gathers the public names.
"""

from ._planner_dag import dag_planner
from ._planner_dag import dag_problems as dag_problems
from ._planner_hierarchical import hierarchical_planner
from ._planner_models import MAX_PLAN_STEPS as MAX_PLAN_STEPS
from ._planner_models import (
    DecomposeJob,
    HierarchicalState,
    Plan,
    PlannerState,
    PlannerStatus,
    PlanStatus,
    PlanStep,
    StepJob,
    StepOutcome,
    TaskNode,
)
from ._planner_prompts import PLANNER_SYSTEM as PLANNER_SYSTEM
from ._planner_sequential import sequential_planner

__all__ = [
    "DecomposeJob",
    "HierarchicalState",
    "Plan",
    "PlanStatus",
    "PlanStep",
    "PlannerState",
    "PlannerStatus",
    "StepJob",
    "StepOutcome",
    "TaskNode",
    "dag_planner",
    "hierarchical_planner",
    "sequential_planner",
]
