"""`sequential_planner`: plan a numbered list, run the steps one after the other."""

from flowstate.engine import END, START, Command, GraphBuilder, NodeContext
from flowstate.llm import LLM

from ._common import Executor, ask
from ._parsing import parse_list
from ._planner_executors import _add_executor
from ._planner_loop import _check_bounds, _dispatch, _plan_prompt, _retry_plan, _size_problem
from ._planner_models import MAX_PLAN_STEPS, Plan, PlannerState, PlanStep
from ._planner_prompts import _PLAN, PLANNER_SYSTEM


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
