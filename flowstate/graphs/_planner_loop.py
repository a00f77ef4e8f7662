"""The execution loop the three planners share: `dispatch` applies the executors' results,
sends the ready steps to `execute`, replans or ends the run; plus the planning prompt and
the checks on a plan's size."""

from typing import Any

from flowstate.engine import END, Command, Send

from ._common import clip
from ._planner_executors import _Mode
from ._planner_models import Plan, PlannerState, PlanStep, StepJob
from ._planner_prompts import _FAILED_STEPS, _REJECTED, _REPLAN


def _dispatch(mode: _Mode, *, parallel: bool, replan: bool, max_replans: int) -> Any:
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


def _send(state: PlannerState, plan: Plan, step: PlanStep, mode: _Mode) -> Send:
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
