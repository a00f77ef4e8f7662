"""Graphs the state-editing tests share."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, append


class S(BaseModel):
    n: int = 0
    note: str = ""
    log: Annotated[list[str], append] = []


def a(s: S) -> dict[str, Any]:
    return {"log": [f"a:{s.n}"]}


def route(s: S) -> Literal["b", "c"]:
    return "c" if s.n > 10 else "b"


async def b(s: S, ctx: NodeContext) -> dict[str, Any]:
    seen = await ctx.effect("look", lambda note: f"saw {note}", s.note)
    return {"log": [f"b:{seen}"]}


def c(s: S) -> dict[str, Any]:
    return {"log": [f"c:{s.n}"]}


def routed_graph() -> GraphBuilder[S]:
    """START -> a -(n > 10 ? c : b)-> END."""
    g = GraphBuilder(S).add_node(a).add_node(b).add_node(c)
    g.add_edge(START, "a").add_conditional_edges("a", route)
    g.add_edge("b", END).add_edge("c", END)
    return g


async def ask(s: S, ctx: NodeContext) -> dict[str, Any]:
    answer = await ctx.interrupt({"question": "ok?", "note": s.note})
    return {"log": [f"ask:{answer}:{s.note}"]}


def asking_graph() -> GraphBuilder[S]:
    """START -> a -> ask (interrupts) -> c -> END."""
    g = GraphBuilder(S).add_node(a).add_node(ask).add_node(c)
    g.add_edge(START, "a").add_edge("a", "ask").add_edge("ask", "c").add_edge("c", END)
    return g
