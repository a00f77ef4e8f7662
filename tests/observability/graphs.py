"""Graphs for the observability tests (importable by child processes)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, RetryPolicy, Send, append
from flowstate.llm import ScriptedLLM, ToolCall, ToolRegistry, tool, user


class Agent(BaseModel):
    items: list[int] = []
    results: Annotated[list[int], append] = []
    answer: str = ""
    x: int = 0


class Item(BaseModel):
    value: int


class Sub(BaseModel):
    x: int = 0


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def sub_graph() -> GraphBuilder[Sub]:
    def double(s: Sub) -> dict:
        return {"x": s.x * 2}

    g = GraphBuilder(Sub, name="doubler")
    g.add_node(double).add_edge(START, "double").add_edge("double", END)
    return g


def agent_graph() -> GraphBuilder[Agent]:
    """split -> Send fan-out to square -> ask (an LLM call and a tool call) -> child (a
    subgraph) -> END."""

    def split(s: Agent) -> None:
        return None

    def fan(s: Agent) -> list[Send]:
        return [Send("square", Item(value=v)) for v in s.items]

    async def square(item: Item) -> dict:
        return {"results": [item.value * item.value]}

    async def ask(s: Agent, ctx: NodeContext) -> dict:
        reply = await ctx.llm.complete([user(f"sum of {s.results}?")], max_tokens=64)
        out = await ctx.tools.run_call(ToolCall(id="call-1", name="add", input={"a": 2, "b": 3}))
        return {"answer": f"{reply.text} {out.content}", "x": sum(s.results)}

    g = GraphBuilder(Agent, name="agent")
    g.add_node(split).add_node(square).add_node(ask)
    g.add_node(
        "child", sub_graph().compile(store=":memory:"), input_map={"x": "x"}, output_map={"x": "x"}
    )
    g.add_edge(START, "split").add_conditional_edges("split", fan, ["square"])
    g.add_edge("square", "ask").add_edge("ask", "child").add_edge("child", END)
    return g


def agent_services(app: object) -> None:
    app.services["llm"] = ScriptedLLM(  # type: ignore[attr-defined]
        [{"text": "fourteen", "usage": {"input_tokens": 12, "output_tokens": 3}}],
        model="claude-scripted",
    )
    app.services["tools"] = ToolRegistry([add])  # type: ignore[attr-defined]


class Chain(BaseModel):
    n: int = 0


def slow_chain(steps: int, delay: float) -> GraphBuilder[Chain]:
    """``steps`` nodes in a row, each sleeping ``delay`` seconds (a window to kill in)."""

    async def inc(s: Chain) -> dict:
        await asyncio.sleep(delay)
        return {"n": s.n + 1}

    g = GraphBuilder(Chain, name="slow_chain")
    for i in range(steps):
        g.add_node(f"n{i}", inc)
    g.add_edge(START, "n0")
    for i in range(steps - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{steps - 1}", END)
    return g


def flaky_graph(fail_times: int) -> GraphBuilder[Chain]:
    """One node that raises ``fail_times`` times, then succeeds (retried up to 3 times)."""
    seen = {"calls": 0}

    def flaky(s: Chain) -> dict:
        seen["calls"] += 1
        if seen["calls"] <= fail_times:
            raise ConnectionError(f"flaky call {seen['calls']}")
        return {"n": s.n + 1}

    g = GraphBuilder(Chain, name="flaky")
    g.add_node(flaky, retry=RetryPolicy(max_attempts=3, initial_delay=0.0, jitter=0.0))
    g.add_edge(START, "flaky").add_edge("flaky", END)
    return g
