"""A tool-using agent: an LLM node and a tool node in a ReAct loop, checkpointed per node.

Runs offline by default, with a scripted model that reads the question and plays the part of
the agent. With an API key it runs against Claude instead:

    python examples/llm_agent.py
    python examples/llm_agent.py --question "How many people live in Lyon and Nantes together?"
    ANTHROPIC_API_KEY=sk-ant-... python examples/llm_agent.py --llm anthropic:claude-sonnet-4-5
    flowstate graph examples/llm_agent.py:graph

The model and tool calls are journaled effects: resuming a crashed run (`--db runs.db`, then
`flowstate resume RUN --graph examples/llm_agent.py:graph --db runs.db`) never calls the model
for a turn that already happened, nor re-runs a tool that completed. The script prints the
transcript and the tokens each node used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder
from flowstate.llm import (
    LLM,
    LLMError,
    LLMRequest,
    Message,
    ScriptedLLM,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    llm_from_spec,
    tool,
)
from flowstate.nodes import llm_node, messages_reducer, node_usage, run_usage, tool_node

POPULATION = {"Lyon": 522_250, "Nantes": 323_204, "Lille": 236_710, "Paris": 2_102_650}
"""City populations (INSEE, 2021) that the `population` tool knows."""

QUESTION = "How many people live in Lyon and Nantes together?"


@tool
def population(city: str) -> int:
    """Population of a French city (Lyon, Nantes, Lille or Paris)."""
    if city not in POPULATION:
        raise KeyError(f"no data for {city!r}; known cities: {', '.join(POPULATION)}")
    return POPULATION[city]


@tool
def add(numbers: list[int]) -> int:
    """Sum a list of integers exactly."""
    return sum(numbers)


TOOLS = [population, add]


class AgentState(BaseModel):
    question: str
    """What the user asked."""
    messages: Annotated[list[Message], messages_reducer] = []
    """The conversation with the model, tool calls and results included."""
    answer: str = ""
    """The text of the model's latest turn (its final answer once the run completes)."""


def wants_tools(state: AgentState) -> Literal["tools", "__end__"]:
    """Run the tools while the model's last turn calls some; otherwise the agent is done."""
    last = state.messages[-1]
    return "tools" if any(isinstance(b, ToolUseBlock) for b in last.blocks) else END


def build(llm: LLM) -> GraphBuilder[AgentState]:
    g = GraphBuilder(AgentState, name="llm_agent")
    g.add_node(
        "agent",
        llm_node(
            llm,
            prompt="{question}",
            system=(
                "You answer questions about French cities. Look numbers up with the "
                "population tool and do arithmetic with the add tool; never guess. Answer "
                "in one sentence."
            ),
            tools=TOOLS,
            messages_field="messages",
            output_field="answer",
        ),
    )
    g.add_node("tools", tool_node(TOOLS))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", wants_tools)
    g.add_edge("tools", "agent")
    return g


def offline_agent(request: LLMRequest) -> dict[str, Any]:
    """A scripted stand-in for the model: look up each city named, add, then answer."""
    results = [
        b
        for m in request.messages
        if m.role == "user"
        for b in m.blocks
        if isinstance(b, ToolResultBlock) and not b.is_error
    ]
    usage = {"input_tokens": 40 * len(request.messages) + 150, "output_tokens": 25}
    cities = [c for c in POPULATION if c.lower() in request.messages[0].text.lower()]
    if not cities:
        return {"text": f"I only know {', '.join(POPULATION)}.", "usage": usage}
    if not results:
        calls = [{"name": "population", "input": {"city": c}} for c in cities]
        return {"text": "Let me look those up.", "tool_calls": calls, "usage": usage}
    if len(cities) > 1 and len(results) == len(cities):
        numbers = [int(r.content) for r in results]
        calls = [{"name": "add", "input": {"numbers": numbers}}]
        return {"tool_calls": calls, "usage": usage}
    total = int(results[-1].content)
    return {"text": f"{' and '.join(cities)}: {total:,} people in all.", "usage": usage}


def graph() -> GraphBuilder[AgentState]:
    """The offline agent, for `flowstate graph/run examples/llm_agent.py:graph`."""
    return build(ScriptedLLM(offline_agent))


def print_transcript(messages: list[Message]) -> None:
    for m in messages:
        for block in m.blocks:
            if isinstance(block, TextBlock):
                print(f"  {m.role:>9}: {block.text}")
            elif isinstance(block, ToolUseBlock):
                args = ", ".join(f"{k}={json.dumps(v)}" for k, v in block.input.items())
                print(f"  {'call':>9}: {block.name}({args})")
            else:
                flag = " (error)" if block.is_error else ""
                print(f"  {'result':>9}: {block.content}{flag}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default=QUESTION)
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
        llm = ScriptedLLM(offline_agent) if args.llm == "scripted" else llm_from_spec(args.llm)
    except LLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = build(llm).compile(store=args.db)
    try:
        result = await app.run({"question": args.question}, max_steps=40)
    finally:
        if hasattr(llm, "aclose"):
            await llm.aclose()

    print(f"run {result.run_id}: {result.status} with {llm!r}")
    print_transcript(result.state.messages)
    print("tokens by node:")
    for node, counts in node_usage(app.store, result.run_id).items():
        print(f"  {node}: {prompt_tokens(counts)} in, {counts['output_tokens']} out")
    total = run_usage(app.store, result.run_id)
    cached = total.get("cache_read_input_tokens", 0)
    print(
        f"tokens in all: {prompt_tokens(total)} in, {total['output_tokens']} out"
        + (f" ({cached} of the input read from the prompt cache)" if cached else "")
    )
    return 0 if result.status == "completed" else 1


def prompt_tokens(counts: dict[str, int]) -> int:
    """All prompt tokens: uncached, written to the prompt cache, and read from it."""
    return (
        counts["input_tokens"]
        + counts.get("cache_creation_input_tokens", 0)
        + counts.get("cache_read_input_tokens", 0)
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
