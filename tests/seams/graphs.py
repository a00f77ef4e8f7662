"""Graphs for the engine-seams tests (importable by the CLI and the service)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, Send, append


class Asks(BaseModel):
    n: int = 12
    answers: Annotated[list[str], append] = []


class Item(BaseModel):
    i: int


def fan_out_asks() -> GraphBuilder[Asks]:
    """``n`` Send activations of ``ask``, each interrupting once."""

    def split(s: Asks) -> None:
        return None

    def fan(s: Asks) -> list[Send]:
        return [Send("ask", Item(i=i)) for i in range(s.n)]

    async def ask(item: Item, ctx: NodeContext) -> dict:
        got = await ctx.interrupt({"item": item.i})
        return {"answers": [f"{item.i}={got}"]}

    g = GraphBuilder(Asks, name="fan_out_asks")
    g.add_node(split).add_node(ask)
    g.add_edge(START, "split").add_conditional_edges("split", fan, ["ask"])
    g.add_edge("ask", END)
    return g


def two_asks() -> GraphBuilder[Asks]:
    """Two different nodes in one step, each interrupting."""

    async def left(s: Asks, ctx: NodeContext) -> dict:
        return {"answers": [f"left={await ctx.interrupt('left?')}"]}

    async def right(s: Asks, ctx: NodeContext) -> dict:
        return {"answers": [f"right={await ctx.interrupt('right?')}"]}

    g = GraphBuilder(Asks, name="two_asks")
    g.add_node(left).add_node(right)
    g.add_edge(START, "left").add_edge(START, "right")
    g.add_edge("left", END).add_edge("right", END)
    return g
