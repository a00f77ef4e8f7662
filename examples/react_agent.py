"""A ReAct agent (`flowstate.graphs.react_agent`): reason → act → observe, checkpointed per node.

Runs offline by default, with a scripted model that plays the agent. With an API key it runs
on Claude instead:

    python examples/react_agent.py
    python examples/react_agent.py --protocol text
    python examples/react_agent.py --task "How many people live in Lille and Paris?"
    python examples/react_agent.py --db runs.db --memory agent:cities   # twice: it recalls
    ANTHROPIC_API_KEY=sk-ant-... python examples/react_agent.py --llm anthropic:claude-sonnet-4-5
    flowstate graph examples/react_agent.py:graph

`--protocol native` (the default) uses Anthropic tool use; `--protocol text` has the model
write `Thought:` / `Action: tool({json})` / `Final Answer:` lines instead. Model and tool calls
are journaled effects: with `--db runs.db`, a crashed run resumes with `flowstate resume RUN
--graph examples/react_agent.py:graph --db runs.db` without calling the model again for the
turns it already took. With `--memory NAMESPACE` the agent remembers its observations and
answers there and recalls them in later runs; the memories live in the `--db` database (an
SQLite file, or a `postgresql://` URL for a fleet of workers). The script prints every step
and the final status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any

from flowstate import GraphBuilder
from flowstate.graphs import FinalAnswer, MemorySpec, ReActState, ToolAction, react_agent
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

TASK = "How many people live in Lyon and Nantes together?"
SYSTEM = (
    "You answer questions about French cities. Look numbers up with the population tool and "
    "do arithmetic with the add tool; never guess. Answer in one sentence."
)


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


TOOLS = [population, add]


def build(
    llm: LLM, protocol: str = "native", max_steps: int = 8, memory: str | None = None
) -> GraphBuilder[ReActState]:
    return react_agent(
        llm,
        TOOLS,
        max_steps=max_steps,
        protocol=protocol,
        system=SYSTEM,  # type: ignore[arg-type]
        memory=MemorySpec(namespace=memory) if memory else None,
    )


# -- the offline model --------------------------------------------------------------------------


def _observations(request: LLMRequest) -> list[int]:
    """Numbers the tools returned so far (native tool results or text observations)."""
    found: list[int] = []
    for m in request.messages[1:]:
        if m.role != "user":
            continue
        for block in m.blocks:
            if isinstance(block, ToolResultBlock) and not block.is_error:
                found.append(int(block.content))
        match = re.fullmatch(r"Observation: (\d+)", m.text.strip())
        if match:
            found.append(int(match.group(1)))
    return found


def offline_model(request: LLMRequest) -> dict[str, Any]:
    """A scripted stand-in for the model: look up each city, add, answer (either protocol)."""
    text_protocol = not request.tools
    task = request.messages[0].text
    cities = [c for c in POPULATION if c.lower() in task.lower()][:2]
    seen = _observations(request)
    turn = len(request.messages) // 2 + 1
    call: tuple[str, dict[str, Any]] | None = None
    if len(seen) < len(cities):
        city = cities[len(seen)]
        thought, call = f"I need the population of {city}.", ("population", {"city": city})
    elif len(cities) == 2 and len(seen) == 2:
        thought, call = "Now I add the two numbers.", ("add", {"a": seen[0], "b": seen[1]})
    elif cities:
        thought = "I have what I need."
        answer = f"{' and '.join(cities)}: {seen[-1]:,} people in all."
    else:
        thought, answer = "I have no data for that.", f"I only know {', '.join(POPULATION)}."
    if text_protocol:
        if call is not None:
            return {"text": f"Thought: {thought}\nAction: {call[0]}({json.dumps(call[1])})"}
        return {"text": f"Thought: {thought}\nFinal Answer: {answer}"}
    if call is not None:
        return {
            "text": thought,
            "tool_calls": [{"name": call[0], "input": call[1], "id": f"toolu_{turn}"}],
        }
    return {"text": answer}


def graph() -> GraphBuilder[ReActState]:
    """The offline agent, for `flowstate graph/run examples/react_agent.py:graph`."""
    return build(ScriptedLLM(offline_model))


def print_steps(state: ReActState) -> None:
    for i, step in enumerate(state.steps, 1):
        lines: list[str] = [f"thought: {step.thought}"] if step.thought else []
        action = step.action
        if isinstance(action, ToolAction):
            lines.append(f"action:  {action.tool}({json.dumps(action.input)})")
        elif isinstance(action, FinalAnswer):
            lines.append(f"answer:  {action.answer}")
        if step.observation is not None:
            flag = "" if step.observation.success else " (error)"
            lines.append(f"observe: {step.observation.content}{flag}")
        for j, line in enumerate(lines):
            print(f"  {f'{i}.' if j == 0 else '':<3} {line}")


async def main(argv: list[str] | None = None, *, store: Any = None) -> int:
    """Run the example; ``store`` (a checkpoint store object) overrides ``--db``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--protocol", choices=["native", "text"], default="native")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument(
        "--llm",
        default="scripted",
        help="'scripted' (offline, the default) or anthropic:MODEL, e.g. "
        "anthropic:claude-sonnet-4-5 (needs ANTHROPIC_API_KEY)",
    )
    parser.add_argument(
        "--db",
        default=":memory:",
        help="SQLite file or postgresql:// URL for the checkpoints (and the memories)",
    )
    parser.add_argument(
        "--memory",
        metavar="NAMESPACE",
        help="remember observations and answers in this namespace and recall them in later "
        "runs (use a --db that persists)",
    )
    args = parser.parse_args(argv)

    llm: Any
    try:
        llm = ScriptedLLM(offline_model) if args.llm == "scripted" else llm_from_spec(args.llm)
    except LLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = build(llm, args.protocol, args.max_steps, args.memory).compile(
        store=store if store is not None else args.db
    )
    try:
        result = await app.run({"task": args.task})
    finally:
        if hasattr(llm, "aclose"):
            await llm.aclose()

    state = result.state
    print(f"run {result.run_id}: {result.status}, agent {state.status} after {state.turns} turns")
    print_steps(state)
    print(f"answer: {state.answer}" if state.answer is not None else f"no answer: {state.error}")
    if args.memory:
        held = app.memory_store().memory("episodic", args.memory).inspect()
        print(f"memory {args.memory!r}: {len(held)} entries")
    return 0 if state.status == "answered" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
