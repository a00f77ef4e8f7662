"""Three planners (`flowstate.graphs`): sequential, hierarchical and DAG plan-and-execute.

Each plans with the model, then runs every step with a ReAct agent that has two tools
(`population`, `add`) as a subgraph. The DAG planner runs independent steps in parallel; the
sequential and DAG planners replan when a step fails (`--fail` makes the first lookup of
Nantes fail, to show it). Runs offline by default with a scripted model; with an API key it
runs on Claude:

    python examples/planners.py
    python examples/planners.py --planner dag --fail
    ANTHROPIC_API_KEY=sk-ant-... python examples/planners.py --llm anthropic:claude-sonnet-4-5
    flowstate graph examples/planners.py:dag

Every model call (the planner's and the agents') and every tool call is a journaled effect:
a run resumed after a crash (`--db runs.db`, then `flowstate resume RUN --graph
examples/planners.py:dag --db runs.db`) goes on from its last checkpoint, inside the agent
subgraph if that is where it stopped, without calling the model again for finished turns.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

from flowstate import GraphBuilder
from flowstate.graphs import (
    PlannerState,
    dag_planner,
    hierarchical_planner,
    react_agent,
    sequential_planner,
)
from flowstate.llm import (
    LLM,
    LLMError,
    LLMRequest,
    ScriptedLLM,
    ToolResultBlock,
    llm_from_spec,
    tool,
)

POPULATION = {"Lyon": 522_250, "Nantes": 323_204, "Lille": 236_710, "Paris": 2_102_650}
"""City populations (INSEE, 2021) that the `population` tool knows."""

GOAL = "Find out how many people live in Lyon and Nantes together, and say it in one sentence."
AGENT_SYSTEM = (
    "You carry out one step of a larger plan. Look numbers up with the population tool and do "
    "arithmetic with the add tool; never guess. Reply with the step's result only."
)
BUILDERS = {
    "sequential": sequential_planner,
    "hierarchical": hierarchical_planner,
    "dag": dag_planner,
}


@tool
def population(city: str) -> int:
    """Population of a French city (Lyon, Nantes, Lille or Paris)."""
    if city not in POPULATION:
        raise KeyError(f"no data for {city!r}; known cities: {', '.join(POPULATION)}")
    return POPULATION[city]


@tool
def add(a: int, b: int) -> int:
    """Add two integers exactly."""
    return a + b


def build(kind: str, llm: LLM) -> GraphBuilder[Any]:
    agent = react_agent(llm, [population, add], system=AGENT_SYSTEM, name=f"{kind}_agent")
    return BUILDERS[kind](llm, agent, name=f"{kind}_planner")


# -- the offline model --------------------------------------------------------------------------

SEQUENTIAL_PLAN = """Here is the plan:
1. Find the population of Lyon
2. Find the population of Nantes
3. Add the two populations
4. Write one sentence with the total"""

DAG_PLAN = """1. Find the population of Lyon (depends on: none)
2. Find the population of Nantes (depends on: none)
3. Add the two populations (depends on: 1, 2)
4. Write one sentence with the total (depends on: 3)"""

DECOMPOSITIONS = {
    GOAL: "1. Gather the populations\n2. Add the two populations\n3. Write one sentence",
    "Gather the populations": "1. Find the population of Lyon\n2. Find the population of Nantes",
}


def offline_model(fail_nantes: bool) -> Any:
    """A scripted stand-in for the model, as a function of each request (no hidden state)."""

    def plan(prompt: str) -> str:
        if "Is this subtask complex" in prompt:
            return "Yes." if "Gather" in prompt else "No."
        if "Break this task" in prompt:
            task = re.search(r"^Task: (.+)$", prompt, re.MULTILINE)
            return DECOMPOSITIONS.get(task.group(1) if task else "", "1. Do it")
        dag = "depends on" in prompt
        if "The plan has to change" in prompt:  # Nantes failed: look it up another way
            if dag:
                return "5. Find the population of Nantes again (depends on: none)\n" + (
                    "6. Add the two populations (depends on: 1, 5)\n"
                    "7. Write one sentence with the total (depends on: 6)"
                )
            return (
                "1. Find the population of Nantes again\n2. Add the two populations\n"
                "3. Write one sentence with the total"
            )
        return DAG_PLAN if dag else SEQUENTIAL_PLAN

    def agent(request: LLMRequest) -> dict[str, Any]:
        step = request.messages[0].text.split("\n\n")[0]
        results = [b for m in request.messages for b in m.blocks if isinstance(b, ToolResultBlock)]
        turn = len(request.messages) // 2 + 1
        city = next((c for c in POPULATION if c in step), None)
        if city is not None:
            if fail_nantes and city == "Nantes" and "again" not in step:
                return {"text": "", "stop_reason": "refusal"}  # the agent gives up
            if not results:
                call = {"name": "population", "input": {"city": city}, "id": f"toolu_{turn}"}
                return {"text": f"Looking up {city}.", "tool_calls": [call]}
            return {"text": f"{city} has {results[-1].content} inhabitants."}
        numbers = [int(n) for n in re.findall(r"\b\d{5,}\b", request.messages[0].text)]
        if step.startswith("Add") and len(numbers) >= 2 and not results:
            call = {"name": "add", "input": {"a": numbers[-2], "b": numbers[-1]}, "id": "toolu_add"}
            return {"tool_calls": [call]}
        if step.startswith("Add") and results:
            return {"text": f"The total is {results[-1].content}."}
        total = max(numbers, default=0)
        return {"text": f"Lyon and Nantes have {total:,} inhabitants together."}

    def model(request: LLMRequest) -> dict[str, Any]:
        if request.system is not None and "planner" in request.system:
            return {"text": plan(request.last_user_text)}
        return agent(request)

    return model


def sequential() -> GraphBuilder[Any]:
    """The offline sequential planner, for `flowstate graph examples/planners.py:sequential`."""
    return build("sequential", ScriptedLLM(offline_model(False)))


def hierarchical() -> GraphBuilder[Any]:
    """The offline hierarchical planner."""
    return build("hierarchical", ScriptedLLM(offline_model(False)))


def dag() -> GraphBuilder[Any]:
    """The offline DAG planner."""
    return build("dag", ScriptedLLM(offline_model(False)))


def print_run(kind: str, run_id: str, state: PlannerState) -> None:
    print(f"{kind} planner, run {run_id}: {state.status} (replans: {state.replans})")
    for step in state.plan.steps:
        after = f" after {step.depends_on}" if step.depends_on else ""
        print(f"  [{step.status:>9}] {step.id}. {step.description}{after}")
        if step.result:
            print(f"               → {step.result}")
    failures = [o for o in state.outcomes if not o.success]
    for o in failures:
        print(f"  failed once: step {o.step_id}: {o.result}")
    print(f"  answer: {state.answer}" if state.answer else f"  error: {state.error}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planner", choices=[*BUILDERS, "all"], default="all")
    parser.add_argument("--goal", default=GOAL)
    parser.add_argument(
        "--fail", action="store_true", help="offline: the first Nantes lookup fails"
    )
    parser.add_argument(
        "--llm",
        default="scripted",
        help="'scripted' (offline, the default) or anthropic:MODEL, e.g. "
        "anthropic:claude-sonnet-4-5 (needs ANTHROPIC_API_KEY)",
    )
    parser.add_argument("--db", default=":memory:", help="SQLite file for the checkpoints")
    args = parser.parse_args(argv)

    llm: Any
    try:
        if args.llm == "scripted":
            llm = ScriptedLLM(offline_model(args.fail))
        else:
            llm = llm_from_spec(args.llm)
    except LLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kinds = list(BUILDERS) if args.planner == "all" else [args.planner]
    ok = True
    try:
        for kind in kinds:
            app = build(kind, llm).compile(store=args.db)
            result = await app.run({"goal": args.goal})
            print_run(kind, result.run_id, result.state)
            ok = ok and result.state.status == "completed"
    finally:
        if hasattr(llm, "aclose"):
            await llm.aclose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
