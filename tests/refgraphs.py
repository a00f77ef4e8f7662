"""Reference graphs for crash tests (RELIABILITY.md §3): each effect delivers to an external
sink (a separate SQLite file) keyed by its idempotency key, so duplicates are countable."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Annotated, Literal

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, append, merge


class RefState(BaseModel):
    log: Annotated[list[str], append] = []
    seen: Annotated[dict[str, int], merge] = {}
    rounds: int = 0


def deliver(sink: str, key: str, value: str) -> str:
    """The external side effect: one row per delivery; the key says what it was."""
    with sqlite3.connect(sink, timeout=30) as c:
        c.execute("CREATE TABLE IF NOT EXISTS deliveries (key TEXT, value TEXT)")
        c.execute("INSERT INTO deliveries VALUES (?, ?)", [key, value])
    return f"ok:{value}"


def _node(name: str, sink: str | None, delay: float):
    async def node(s: RefState, ctx: NodeContext) -> dict:
        if delay:
            await asyncio.sleep(delay)
        out = name
        if sink:
            out = await ctx.effect("deliver", deliver, sink, ctx.idempotency_key(), name)
        return {"log": [f"{name}:{out}:{len(s.log)}"], "seen": {name: len(s.log)}}

    node.__name__ = name
    return node


def linear(n: int = 20, sink: str | None = None, delay: float = 0.0) -> GraphBuilder[RefState]:
    g = GraphBuilder(RefState, name=f"linear{n}")
    prev = START
    for i in range(n):
        g.add_node(_node(f"n{i}", sink, delay))
        g.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    g.add_edge(prev, END)
    return g


def fanout_join(sink: str | None = None, delay: float = 0.0) -> GraphBuilder[RefState]:
    g = GraphBuilder(RefState, name="fanout_join")
    g.add_node(_node("root", sink, delay)).add_edge(START, "root")
    tails = []
    for b in range(5):
        prev = "root"
        for k in range(3):
            name = f"b{b}_{k}"
            g.add_node(_node(name, sink, delay))
            g.add_edge(prev, name)
            prev = name
        tails.append(prev)
    g.add_node(_node("join", sink, delay)).add_edge(tails, "join").add_edge("join", END)
    return g


def loop(sink: str | None = None, delay: float = 0.0, rounds: int = 4) -> GraphBuilder[RefState]:
    g = GraphBuilder(RefState, name="loop")
    body = _node("body", sink, delay)

    async def counted(s: RefState, ctx: NodeContext) -> dict:
        upd = await body(s, ctx)
        return {**upd, "rounds": s.rounds + 1}

    def again(s: RefState) -> Literal["body", "finish"]:
        return "body" if s.rounds < rounds else "finish"

    g.add_node("body", counted).add_node(_node("finish", sink, delay))
    g.add_edge(START, "body").add_conditional_edges("body", again).add_edge("finish", END)
    return g


GRAPHS = {
    "linear20": lambda sink, d: linear(20, sink, d),
    "linear4": lambda sink, d: linear(4, sink, d),
    "fanout_join": fanout_join,
    "loop": loop,
}
