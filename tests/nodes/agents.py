"""A small ReAct agent over the prebuilt nodes, shared by the tests in this package."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from flowstate import END, START, CompiledGraph, GraphBuilder, SQLiteStore
from flowstate.llm import LLM, Message, ToolUseBlock, tool
from flowstate.nodes import llm_node, messages_reducer, tool_node

POPULATION = {"Lyon": 522_000, "Nantes": 320_000}


class AgentState(BaseModel):
    question: str
    messages: Annotated[list[Message], messages_reducer] = []
    answer: str = ""


def wants_tools(state: AgentState) -> Literal["tools", "__end__"]:
    """The mini ReAct router: run the tools while the model's last turn calls some."""
    last = state.messages[-1]
    return "tools" if any(isinstance(b, ToolUseBlock) for b in last.blocks) else END


class Toolbox:
    """Tools that count their calls (per instance, so tests do not share counts)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

        @tool
        async def population(city: str) -> int:
            """Population of a city."""
            self.calls["population"] += 1
            return POPULATION[city]

        @tool
        def add(a: int, b: int) -> int:
            """Add two integers."""
            self.calls["add"] += 1
            return a + b

        self.population = population
        self.add = add

    @property
    def tools(self) -> list[Any]:
        return [self.population, self.add]


def build_agent(
    llm: LLM, tools: list[Any], store: str | Path | SQLiteStore = ":memory:"
) -> CompiledGraph[AgentState]:
    g = GraphBuilder(AgentState, name="react_agent")
    g.add_node(
        "agent",
        llm_node(
            llm,
            prompt="Answer the question: {question}",
            system="You are a careful assistant. Use the tools.",
            tools=tools,
            messages_field="messages",
            output_field="answer",
        ),
    )
    g.add_node("tools", tool_node(tools))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", wants_tools)
    g.add_edge("tools", "agent")
    return g.compile(store=store if isinstance(store, SQLiteStore | str) else str(store))


def react_script() -> list[Any]:
    """ScriptedLLM turns for 'combined population of Lyon and Nantes'."""
    return [
        {
            "text": "Let me look both up.",
            "tool_calls": [
                {"name": "population", "input": {"city": "Lyon"}},
                {"name": "population", "input": {"city": "Nantes"}},
            ],
            "usage": {"input_tokens": 100, "output_tokens": 20},
        },
        {
            "tool_calls": [{"name": "add", "input": {"a": 522_000, "b": 320_000}}],
            "usage": {"input_tokens": 150, "output_tokens": 10},
        },
        {
            "text": "Together they have 842000 people.",
            "usage": {"input_tokens": 200, "output_tokens": 8},
        },
    ]
