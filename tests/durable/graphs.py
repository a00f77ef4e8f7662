"""Graphs for the durable-debugging tests."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, append

LIVE: dict[str, Any] = {"raise": False, "calls": 0}
"""The "outside world": tests make it raise to prove replay never calls it."""


def search(query: str) -> dict:
    if LIVE["raise"]:
        raise RuntimeError("the network was called during replay")
    LIVE["calls"] += 1
    return {"hits": [f"{query}-{i}" for i in range(3)]}


async def llm(prompt: str) -> str:
    if LIVE["raise"]:
        raise RuntimeError("the LLM was called during replay")
    LIVE["calls"] += 1
    return f"summary of {prompt}"


class Research(BaseModel):
    topic: str
    hits: list[str] = []
    summary: str = ""
    approved: bool = False
    notes: Annotated[list[str], append] = []


VARIANT = {"summarise_prefix": "about"}


def research_graph(with_approval: bool = True) -> GraphBuilder[Research]:
    async def gather(s: Research, ctx: NodeContext) -> dict:
        res = await ctx.effect("search", search, s.topic)
        return {"hits": res["hits"], "notes": [f"key={ctx.idempotency_key(0)}"]}

    async def summarise(s: Research, ctx: NodeContext) -> dict:
        text = await ctx.effect("llm", llm, f"{VARIANT['summarise_prefix']} {', '.join(s.hits)}")
        return {"summary": text}

    async def approve(s: Research, ctx: NodeContext) -> dict:
        first = await ctx.interrupt({"question": "approve?", "summary": s.summary})
        second = await ctx.interrupt({"question": "really?"})
        return {"approved": bool(first) and bool(second), "notes": [f"answers={first},{second}"]}

    def publish(s: Research) -> dict:
        return {"notes": ["published" if s.approved else "rejected"]}

    g = GraphBuilder(Research, name="research")
    g.add_node(gather).add_node(summarise).add_node(publish)
    g.add_edge(START, "gather").add_edge("gather", "summarise")
    if with_approval:
        g.add_node(approve).add_edge("summarise", "approve").add_edge("approve", "publish")
    else:
        g.add_edge("summarise", "publish")
    g.add_edge("publish", END)
    return g


def no_approval() -> GraphBuilder[Research]:
    return research_graph(with_approval=False)
