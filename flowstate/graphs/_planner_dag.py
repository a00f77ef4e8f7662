"""`dag_planner`: plan with dependencies, run every ready step in parallel; `dag_problems`
checks such a plan."""

from collections.abc import Sequence

import networkx as nx

from flowstate.engine import END, START, Command, GraphBuilder, NodeContext
from flowstate.llm import LLM

from ._common import Executor, ask
from ._parsing import parse_dag_plan
from ._planner_executors import _add_executor
from ._planner_loop import _check_bounds, _dispatch, _plan_prompt, _retry_plan, _size_problem
from ._planner_models import MAX_PLAN_STEPS, Plan, PlannerState, PlanStep
from ._planner_prompts import _DAG_PLAN, _DAG_REPLAN_TAIL, PLANNER_SYSTEM


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
