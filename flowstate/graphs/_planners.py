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
"""

import asyncio
import inspect
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeAlias

import networkx as nx
from pydantic import BaseModel

from flowstate.engine import (
    END,
    START,
    Command,
    CompiledGraph,
    GraphBuilder,
    NodeContext,
    Send,
    append,
)
from flowstate.errors import GraphBuildError
from flowstate.llm import LLM, JournaledLLM, Message, assistant, user

from ._common import Executor, ExecutorFn, ask, clip
from ._parsing import parse_dag_plan, parse_list, parse_yes_no
from ._react import react_agent

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
        todo = list(self.get(step_id).depends_on) if self.get(step_id) else []
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


# -- prompts ----------------------------------------------------------------------------------

PLANNER_SYSTEM = (
    "You are a planner. You break goals into concrete steps that an assistant can carry out "
    "one at a time, and you answer in exactly the format you are asked for."
)

_PLAN = """\
Goal: {goal}

Write a plan to reach the goal as a numbered list, one step per line ("1. ...", "2. ...").
Make every step a concrete task; use as few steps as the goal needs (at most {max_steps})."""

_DAG_PLAN = """\
Goal: {goal}

Write a plan to reach the goal as a numbered list, one step per line. Steps that do not need
each other's results run in parallel, so end every step with the numbers of the steps whose
results it needs: "(depends on: 1, 2)", or "(depends on: none)". Use at most {max_steps} steps.
Example:
1. Find the population of Lyon (depends on: none)
2. Find the population of Nantes (depends on: none)
3. Add the two populations (depends on: 1, 2)"""

_REPLAN = """\
Goal: {goal}

The plan has to change. Steps already completed (they stay in the plan; do not repeat them):
{completed}
{failed}{rejected}
Write the remaining steps to reach the goal as a numbered list, one step per line, at most \
{max_steps} steps."""

_FAILED_STEPS = """
Steps that failed (replace them with steps that can succeed):
{failed}
"""

_REJECTED = """
Your last answer could not be used: {feedback}
"""

_DAG_REPLAN_TAIL = """
Number the new steps from {next_id} on, and end every step with "(depends on: ...)" listing \
the numbers of the steps whose results it needs (completed steps included), or \
"(depends on: none)"."""

_DECOMPOSE = """\
Overall goal: {goal}
{lineage}Task: {task}

Break this task into 3 to 5 subtasks that together accomplish it, as a numbered list, one \
subtask per line ("1. ...")."""

_DECOMPOSE_AGAIN = (
    'I could not find a numbered list in your answer. Write the 3 to 5 subtasks as "1. ...", '
    '"2. ...", one per line, and nothing else.'
)

_IS_COMPLEX = """\
Overall goal: {goal}
{lineage}Subtask: {task}

Is this subtask complex enough that it should be broken down into smaller subtasks before \
anyone works on it? Answer "yes" or "no"."""


# -- builders ---------------------------------------------------------------------------------


def sequential_planner(
    llm: LLM,
    executor: Executor | None = None,
    *,
    max_replans: int = 2,
    max_plan_steps: int = MAX_PLAN_STEPS,
    name: str = "sequential_planner",
) -> GraphBuilder[PlannerState]:
    """Plan as a numbered list, run the steps one after the other, replan on failure.

    The model writes the plan as a numbered list (`1.`, `1)`, `Step 1:`, bullets, blank lines
    and prose around it are all read). Each step runs with `executor` (default:
    `react_agent(llm)` without tools, as a subgraph) and sees the results of the steps before
    it. When a step fails, the model is asked for the remaining steps, with the failure as
    feedback; completed steps are kept. An unusable plan is sent back the same way. After
    `max_replans` new plans the run ends with `status="failed"`.
    """
    _check_bounds(max_replans=max_replans, max_plan_steps=max_plan_steps)
    g = GraphBuilder(PlannerState, name=name)
    mode = _add_executor(g, llm, executor, name)

    async def plan(state: PlannerState, ctx: NodeContext) -> Command:
        """Ask the model for the plan (or for the remaining steps, after a failure)."""
        kept = [s for s in state.plan.steps if s.status == "completed"]
        first = _PLAN.format(goal=state.goal, max_steps=max_plan_steps)
        prompt = _plan_prompt(state, first, max_plan_steps)
        text = await ask(llm, ctx, prompt, system=PLANNER_SYSTEM)
        items = parse_list(text)
        problem = _size_problem(len(items), max_plan_steps)
        if problem is not None:
            return _retry_plan(state, problem, max_replans)
        next_id = state.plan.next_id()
        steps = list(kept)
        previous = kept[-1].id if kept else None
        for offset, description in enumerate(items):
            step_id = next_id + offset
            steps.append(
                PlanStep(
                    id=step_id,
                    description=description,
                    depends_on=[previous] if previous is not None else [],
                )
            )
            previous = step_id
        return Command(
            update={"plan": Plan(steps=steps), "status": "executing", "feedback": None},
            goto="dispatch",
        )

    g.add_node("plan", plan, goto=["plan", "dispatch", END], max_visits=max_replans + 1)
    g.add_node(
        "dispatch",
        _dispatch(mode, parallel=False, replan=True, max_replans=max_replans),
        goto=["execute", "plan", END],
    )
    g.add_edge(START, "plan")
    g.add_edge("execute", "dispatch")
    return g


def dag_planner(
    llm: LLM,
    executor: Executor | None = None,
    *,
    max_replans: int = 2,
    max_plan_steps: int = MAX_PLAN_STEPS,
    name: str = "dag_planner",
) -> GraphBuilder[PlannerState]:
    """Plan with dependencies, run every ready step in parallel, replan on failure.

    The model writes numbered steps ending with `(depends on: 1, 2)`. The plan is checked with
    networkx: duplicate numbers, unknown step numbers and cycles are sent back to the model,
    listed, for a new plan. Then every step whose dependencies have completed runs, in
    parallel (one `execute` activation per step via `Send`); the results join in `dispatch`,
    which sends the next ready steps, until the plan is done. A failed step makes the model
    replan the remaining steps (completed steps keep their numbers and results). Replans,
    for rejected plans and failed steps together, are bounded by `max_replans`.
    """
    _check_bounds(max_replans=max_replans, max_plan_steps=max_plan_steps)
    g = GraphBuilder(PlannerState, name=name)
    mode = _add_executor(g, llm, executor, name)

    async def plan(state: PlannerState, ctx: NodeContext) -> Command:
        """Ask the model for a plan with dependencies and validate it."""
        kept = [s for s in state.plan.steps if s.status == "completed"]
        next_id = state.plan.next_id()
        first = _DAG_PLAN.format(goal=state.goal, max_steps=max_plan_steps)
        prompt = _plan_prompt(state, first, max_plan_steps)
        if state.plan.steps:
            prompt += _DAG_REPLAN_TAIL.format(next_id=next_id)
        text = await ask(llm, ctx, prompt, system=PLANNER_SYSTEM)
        items = parse_dag_plan(text)
        problems = dag_problems(
            [(i.number, i.depends_on) for i in items],
            completed=[s.id for s in kept],
            max_steps=max_plan_steps,
        )
        if problems:
            listed = "; ".join(f"({n}) {p}" for n, p in enumerate(problems, 1))
            return _retry_plan(state, f"your plan was not valid: {listed}", max_replans)
        steps = list(kept) + [
            PlanStep(id=i.number, description=i.description, depends_on=i.depends_on) for i in items
        ]
        return Command(
            update={"plan": Plan(steps=steps), "status": "executing", "feedback": None},
            goto="dispatch",
        )

    g.add_node("plan", plan, goto=["plan", "dispatch", END], max_visits=max_replans + 1)
    g.add_node(
        "dispatch",
        _dispatch(mode, parallel=True, replan=True, max_replans=max_replans),
        goto=["execute", "plan", END],
    )
    g.add_edge(START, "plan")
    g.add_edge("execute", "dispatch")
    return g


def hierarchical_planner(
    llm: LLM,
    executor: Executor | None = None,
    *,
    max_depth: int = 2,
    name: str = "hierarchical_planner",
) -> GraphBuilder[HierarchicalState]:
    """Decompose the goal into a tree of subtasks, then run the leaves in order.

    The model breaks the goal into 3–5 subtasks and says, for each, whether it is complex
    (yes/no); complex subtasks are broken down the same way, level by level (the subtasks of
    one level are decomposed in parallel), down to `max_depth` levels below the goal. The
    leaves, in tree order, become a sequential plan run with `executor`, each step seeing the
    results of the steps before it. A leaf that fails ends the run with `status="failed"`.
    An answer with no readable list is sent back once; if it still has none, that task is
    treated as a leaf.
    """
    if max_depth < 1:
        raise ValueError(f"hierarchical_planner(max_depth={max_depth}): use 1 or more")
    g = GraphBuilder(HierarchicalState, name=name)
    mode = _add_executor(g, llm, executor, name)

    async def expand(state: HierarchicalState) -> Command:
        """Send the next level of complex subtasks to `decompose`, or build the plan."""
        if state.level == 0:
            root = DecomposeJob(path="", description=state.goal, depth=0)
            return Command(update={"level": 1}, goto=[Send("decompose", root)])
        frontier = [
            n for n in state.tree if n.depth == state.level and n.complex and n.depth < max_depth
        ]
        if frontier:
            by_path = {n.path: n for n in state.tree}
            jobs = [
                Send(
                    "decompose",
                    DecomposeJob(
                        path=n.path,
                        description=n.description,
                        depth=n.depth,
                        lineage=[state.goal, *_lineage(n, by_path)],
                    ),
                )
                for n in frontier
            ]
            return Command(update={"level": state.level + 1}, goto=jobs)
        leaves = _leaves(state.tree) or [state.goal]
        steps = [
            PlanStep(id=i, description=d, depends_on=[i - 1] if i > 1 else [])
            for i, d in enumerate(leaves, 1)
        ]
        return Command(update={"plan": Plan(steps=steps), "status": "executing"}, goto="dispatch")

    async def decompose(job: DecomposeJob, ctx: NodeContext) -> dict[str, Any]:
        """Break one task into subtasks and ask which of them are complex."""
        goal = job.lineage[0] if job.lineage else job.description
        above = job.lineage[1:]  # the tasks between the goal and this one
        prompt = _DECOMPOSE.format(goal=goal, lineage=_lineage_text(above), task=job.description)
        model = JournaledLLM(llm, ctx)
        messages: list[Message] = [user(prompt)]
        reply = await model.complete(messages, system=PLANNER_SYSTEM)
        items = parse_list(reply.text)
        if not items:  # one correction, then the task stays a leaf
            messages += [assistant(reply.text.strip() or "(empty reply)"), user(_DECOMPOSE_AGAIN)]
            reply = await model.complete(messages, system=PLANNER_SYSTEM)
            items = parse_list(reply.text)
        depth = job.depth + 1
        complex_flags = [False] * len(items)
        if depth < max_depth and items:
            child_lineage = _lineage_text([*above, job.description] if job.path else [])
            questions = [
                ask(
                    llm,
                    ctx,
                    _IS_COMPLEX.format(goal=goal, lineage=child_lineage, task=item),
                    system=PLANNER_SYSTEM,
                    max_tokens=50,
                )
                for item in items
            ]
            # gather starts the calls in order, so they take journal sequence numbers in order
            answers = await asyncio.gather(*questions)
            complex_flags = [parse_yes_no(a) is True for a in answers]
        prefix = f"{job.path}." if job.path else ""
        return {
            "tree": [
                TaskNode(
                    path=f"{prefix}{i}",
                    parent=job.path,
                    description=item,
                    depth=depth,
                    complex=flag,
                )
                for i, (item, flag) in enumerate(zip(items, complex_flags, strict=True), 1)
            ]
        }

    g.add_node("expand", expand, goto=["decompose", "dispatch"], max_visits=max_depth + 2)
    g.add_node("decompose", decompose)
    g.add_node(
        "dispatch",
        _dispatch(mode, parallel=False, replan=False, max_replans=0),
        goto=["execute", END],
    )
    g.add_edge(START, "expand")
    g.add_edge("decompose", "expand")
    g.add_edge("execute", "dispatch")
    return g


# -- validation -------------------------------------------------------------------------------


def dag_problems(
    steps: Sequence[tuple[int, Sequence[int]]],
    *,
    completed: Sequence[int] = (),
    max_steps: int = MAX_PLAN_STEPS,
) -> list[str]:
    """What is wrong with a plan of `(number, depends_on)` steps (empty if it is valid).

    `completed` are the numbers of steps kept from an earlier plan: new steps may depend on
    them but not reuse them. Checks: at least one and at most `max_steps` steps, unique
    numbers, dependencies on known steps only, no step depending on itself, no cycle.
    """
    size = _size_problem(len(steps), max_steps)
    if size is not None:
        return [size]
    problems: list[str] = []
    numbers = [n for n, _ in steps]
    seen: set[int] = set()
    for n in numbers:
        if n in seen:
            problems.append(f"step number {n} is used twice; number the steps 1, 2, 3, …")
        elif n in completed:
            problems.append(
                f"step number {n} is already used by a completed step; number new steps from "
                f"{max([*completed, *numbers]) + 1} on"
            )
        seen.add(n)
    known = set(numbers) | set(completed)
    graph = nx.DiGraph()
    graph.add_nodes_from(numbers)
    for n, deps in steps:
        for d in deps:
            if d == n:
                problems.append(f"step {n} depends on itself")
            elif d not in known:
                problems.append(
                    f"step {n} depends on step {d}, which does not exist (steps: "
                    f"{', '.join(map(str, sorted(known)))})"
                )
            elif d in numbers:
                graph.add_edge(d, n)
    for cycle in list(nx.simple_cycles(graph))[:3]:
        if len(cycle) > 1:
            loop = " → ".join(str(c) for c in [*cycle, cycle[0]])
            problems.append(
                f"steps {loop} depend on each other in a cycle, so none of them can start"
            )
    return problems


# -- the shared execution loop ----------------------------------------------------------------


def _dispatch(mode: "_Mode", *, parallel: bool, replan: bool, max_replans: int) -> Any:
    async def dispatch(state: PlannerState) -> Command:
        """Apply the executors' results, then run the next ready steps, replan, or finish."""
        plan = state.plan.model_copy(deep=True)
        for outcome in state.outcomes[state.applied :]:
            step = plan.get(outcome.step_id)
            if step is not None and step.status == "in_progress":
                step.status = "completed" if outcome.success else "failed"
                step.result = outcome.result
        update: dict[str, Any] = {"plan": plan, "applied": len(state.outcomes)}
        failed = [s for s in plan.steps if s.status == "failed"]
        if failed:
            why = "; ".join(
                f"step {s.id} ({clip(s.description, 200)!r}) failed: {clip(s.result or '', 1000)}"
                for s in failed
            )
            if replan and state.replans < max_replans:
                # the failed steps stay in the plan until the new one replaces it, and the
                # replan prompt lists them with their errors
                update |= {"status": "planning", "replans": state.replans + 1, "feedback": None}
                return Command(update=update, goto="plan")
            if replan:
                why += f" (no replan left: max_replans={max_replans})"
            return Command(update=update | {"status": "failed", "error": why}, goto=END)
        ready = plan.ready()
        if not parallel:
            ready = ready[:1]
        if ready:
            sends = []
            for step in ready:
                step.status = "in_progress"
                sends.append(_send(state, plan, step, mode))
            return Command(update=update | {"status": "executing"}, goto=sends)
        if plan.done:
            update |= {"status": "completed", "answer": _answer(plan)}
            return Command(update=update, goto=END)
        waiting = [s.id for s in plan.steps if s.status == "pending"]
        error = f"steps {waiting} wait for steps that will never complete"
        return Command(update=update | {"status": "failed", "error": error}, goto=END)

    return dispatch


def _send(state: PlannerState, plan: Plan, step: PlanStep, mode: "_Mode") -> Send:
    context = _context(state.goal, plan, step)
    if mode == "function":
        job = StepJob(step_id=step.id, description=step.description, context=context)
        return Send("execute", job)
    # A subgraph node takes a parent state as its Send payload (only these fields are read).
    # An executor graph without a `context` field gets the context inside its task.
    task = step.description if mode == "graph_with_context" else f"{step.description}\n\n{context}"
    payload = {"goal": state.goal, "exec_step_id": step.id, "exec_task": task}
    return Send("execute", payload | {"exec_context": context})


def _context(goal: str, plan: Plan, step: PlanStep) -> str:
    lines = [f"Overall goal: {goal}"]
    earlier = [s for s in plan.ancestors(step.id) if s.status == "completed"]
    if earlier:
        lines.append("Results of earlier steps:")
        lines += [
            f"- Step {s.id} ({clip(s.description, 200)}): {clip(s.result or '', 4000)}"
            for s in earlier
        ]
    return "\n".join(lines)


def _answer(plan: Plan) -> str:
    needed = {d for s in plan.steps for d in s.depends_on}
    sinks = [s for s in plan.steps if s.id not in needed]
    if len(sinks) == 1:
        return sinks[0].result or ""
    return "\n".join(f"Step {s.id} ({s.description}): {s.result or ''}" for s in sinks)


def _retry_plan(state: PlannerState, problem: str, max_replans: int) -> Command:
    if state.replans < max_replans:
        return Command(
            update={"replans": state.replans + 1, "feedback": problem, "status": "planning"},
            goto="plan",
        )
    return Command(
        update={
            "status": "failed",
            "error": f"no usable plan: {problem} (no replan left: max_replans={max_replans})",
        },
        goto=END,
    )


def _plan_prompt(state: PlannerState, first: str, max_steps: int) -> str:
    """The first planning prompt, or (once a plan exists) the replanning prompt: completed
    steps with results, failed steps with errors, and why the last answer was refused."""
    if not state.plan.steps:
        if state.feedback is None:
            return first
        return first + "\n" + _REJECTED.format(feedback=state.feedback).rstrip()
    completed = "\n".join(
        f"{s.id}. {s.description}\n   Result: {clip(s.result or '', 1000)}"
        for s in state.plan.steps
        if s.status == "completed"
    )
    failed = "\n".join(
        f"{s.id}. {s.description}\n   Error: {clip(s.result or '', 1000)}"
        for s in state.plan.steps
        if s.status == "failed"
    )
    return _REPLAN.format(
        goal=state.goal,
        completed=completed or "(none)",
        failed=_FAILED_STEPS.format(failed=failed) if failed else "",
        rejected=_REJECTED.format(feedback=state.feedback) if state.feedback else "",
        max_steps=max_steps,
    )


def _size_problem(count: int, max_steps: int) -> str | None:
    if count == 0:
        return 'your answer had no numbered list of steps ("1. ...", "2. ...")'
    if count > max_steps:
        return f"your plan has {count} steps; use at most {max_steps}"
    return None


def _check_bounds(*, max_replans: int, max_plan_steps: int) -> None:
    if max_replans < 0:
        raise ValueError(f"max_replans={max_replans}: use 0 (never replan) or more")
    if max_plan_steps < 1:
        raise ValueError(f"max_plan_steps={max_plan_steps}: allow at least one step")


# -- hierarchical helpers ---------------------------------------------------------------------


def _lineage(node: TaskNode, by_path: dict[str, TaskNode]) -> list[str]:
    chain: list[str] = []
    parent = by_path.get(node.parent)
    while parent is not None:
        chain.append(parent.description)
        parent = by_path.get(parent.parent)
    return chain[::-1]


def _lineage_text(chain: list[str]) -> str:
    return f"This task is part of: {' > '.join(chain)}\n" if chain else ""


def _leaves(tree: list[TaskNode]) -> list[str]:
    parents = {n.parent for n in tree}
    ordered = sorted(tree, key=lambda n: tuple(int(p) for p in n.path.split(".")))
    return [n.description for n in ordered if n.path not in parents]


# -- executors --------------------------------------------------------------------------------


class _StepRun(BaseModel):
    """State of the adapter graph that runs a graph executor for one step."""

    step_id: int = 0
    task: str = ""
    context: str = ""
    answer: Any = None
    status: Any = None
    error: Any = None
    outcomes: Annotated[list[StepOutcome], append] = []


_FAILED = {"failed", "max_steps", "error", "cancelled"}
"""Executor graph statuses that make a step fail even when an answer is present."""

_Mode: TypeAlias = Literal["function", "graph", "graph_with_context"]
"""How `execute` runs a step: an `ExecutorFn`, or a graph (with or without `context`)."""


def _add_executor(g: GraphBuilder[Any], llm: LLM, executor: Executor | None, name: str) -> _Mode:
    """Add the `execute` node and say how it takes its steps."""
    if executor is None:
        executor = react_agent(llm, name=f"{name}_executor")
    if isinstance(executor, GraphBuilder):
        executor = executor.compile(store=":memory:")
    if isinstance(executor, CompiledGraph):
        g.add_node(
            "execute",
            _adapter(executor, name),
            input_map={"step_id": "exec_step_id", "task": "exec_task", "context": "exec_context"},
            output_map={"outcomes": "outcomes"},
        )
        return "graph_with_context" if "context" in executor.ir.schema.fields else "graph"
    if callable(executor):
        g.add_node("execute", _function_node(executor))
        return "function"
    raise TypeError(
        f"{name}: executor {executor!r} is neither an async function (description, context) -> "
        "(success, result) nor a graph; pass one of those, or None for react_agent(llm)"
    )


def _adapter(executor: CompiledGraph[Any], name: str) -> CompiledGraph[_StepRun]:
    """A two-node graph that runs `executor` on one step and turns its end state into a
    `StepOutcome` (so parallel steps append outcomes instead of fighting over fields)."""
    fields = executor.ir.schema.fields
    problems = [
        f"the executor graph '{executor.name}' has no '{f}' field: {why}"
        for f, why in (
            ("task", "the step goes in as `task: str`"),
            ("answer", "the result comes out of `answer`"),
        )
        if f not in fields
    ]
    if problems:
        raise GraphBuildError(name, problems)
    input_map = {"task": "task"}
    if "context" in fields:
        input_map["context"] = "context"
    output_map = {"answer": "answer"}
    output_map |= {f: f for f in ("status", "error") if f in fields}

    async def package(state: _StepRun) -> dict[str, Any]:
        """Turn the executor's end state into this step's outcome."""
        status = getattr(state.status, "value", state.status)
        answer = state.answer
        ok = answer is not None and str(answer).strip() != "" and status not in _FAILED
        if ok:
            result = answer if isinstance(answer, str) else str(answer)
        else:
            result = str(state.error or f"the executor ended with status {status!r} and no answer")
        return {"outcomes": [StepOutcome(step_id=state.step_id, success=ok, result=result)]}

    g = GraphBuilder(_StepRun, name=f"{name}_step")
    g.add_node("run", executor, input_map=input_map, output_map=output_map)
    g.add_node("package", package)
    g.add_edge(START, "run")
    g.add_edge("run", "package")
    g.add_edge("package", END)
    return g.compile(store=":memory:")


def _function_node(executor: ExecutorFn) -> Any:
    async def run_executor(description: str, context: str) -> list[Any]:
        try:
            result: Any = executor(description, context)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            return [False, f"{type(exc).__name__}: {exc}"]
        if isinstance(result, str):
            return [True, result]
        if isinstance(result, tuple | list) and len(result) == 2:
            return [bool(result[0]), result[1] if isinstance(result[1], str) else str(result[1])]
        return [
            False,
            f"the executor returned {type(result).__name__}; it must return (success, result)",
        ]

    async def execute(job: StepJob, ctx: NodeContext) -> dict[str, Any]:
        """Run one plan step with the executor (a journaled effect)."""
        ok, result = await ctx.effect("executor", run_executor, job.description, job.context)
        return {"outcomes": [StepOutcome(step_id=job.step_id, success=ok, result=result)]}

    return execute
