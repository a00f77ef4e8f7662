"""Graphs for the composition tests (importable by child processes)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Annotated, Literal

from pydantic import BaseModel

from flowstate import END, START, Command, GraphBuilder, NodeContext, Send, append


class MapState(BaseModel):
    items: list[int] = []
    results: Annotated[list[int], append] = []
    total: int = 0


class Item(BaseModel):
    value: int


def record(path: str | None, what: str) -> None:
    if path:
        with sqlite3.connect(path, timeout=30) as c:
            c.execute("CREATE TABLE IF NOT EXISTS calls (what TEXT)")
            c.execute("INSERT INTO calls VALUES (?)", [what])


def map_reduce(calls: str | None = None, delay: float = 0.0) -> GraphBuilder[MapState]:
    def split(s: MapState) -> None:
        return None

    def fan(s: MapState) -> list[Send]:
        return [Send("square", Item(value=v)) for v in s.items]

    async def square(item: Item) -> dict:
        if delay:
            # staggered: sends that finish in the same event-loop turn share one group
            # commit, so a kill "mid-step" needs them to finish at different moments
            await asyncio.sleep(delay * (1 + item.value / 25))
        record(calls, f"square:{item.value}")
        return {"results": [item.value * item.value]}

    def reduce(s: MapState) -> dict:
        return {"total": sum(s.results)}

    g = GraphBuilder(MapState, name="map_reduce")
    g.add_node(split).add_node(square).add_node(reduce)
    g.add_edge(START, "split").add_conditional_edges("split", fan, ["square"])
    g.add_edge("square", "reduce").add_edge("reduce", END)
    return g


class Nest(BaseModel):
    x: int = 0
    trail: Annotated[list[str], append] = []


def nested(
    depth: int, calls: str | None = None, crash_file: str | None = None
) -> GraphBuilder[Nest]:
    """A graph whose middle node is a subgraph, nested ``depth`` levels deep."""

    def level(d: int) -> GraphBuilder[Nest]:
        def before(s: Nest) -> dict:
            record(calls, f"before{d}")
            return {"x": s.x + 1, "trail": f"before{d}"}

        async def after(s: Nest, ctx: NodeContext) -> dict:
            if d == depth and crash_file:
                import os
                import signal
                from pathlib import Path

                if not Path(crash_file).exists():
                    Path(crash_file).write_text("crashed once")
                    os.kill(os.getpid(), signal.SIGKILL)
            record(calls, f"after{d}")
            return {"x": s.x * 2, "trail": f"after{d}"}

        g = GraphBuilder(Nest, name=f"level{d}")
        g.add_node(f"before{d}", before).add_node(f"after{d}", after)
        g.add_edge(START, f"before{d}")
        if d < depth:
            g.add_node(f"sub{d + 1}", level(d + 1).compile(store=":memory:"))
            g.add_edge(f"before{d}", f"sub{d + 1}").add_edge(f"sub{d + 1}", f"after{d}")
        else:
            g.add_edge(f"before{d}", f"after{d}")
        g.add_edge(f"after{d}", END)
        return g

    return level(1)


class Cmd(BaseModel):
    n: int = 0
    path: Annotated[list[str], append] = []


def commands() -> GraphBuilder[Cmd]:
    def decide(s: Cmd) -> Command:
        target = "small" if s.n < 10 else "big"
        return Command(update={"path": ["decide"]}, goto=target)

    def small(s: Cmd) -> dict:
        return {"path": ["small"]}

    def big(s: Cmd) -> dict:
        return {"path": ["big"]}

    g = GraphBuilder(Cmd, name="commands")
    g.add_node(decide, goto=["small", "big"]).add_node(small).add_node(big)
    g.add_edge(START, "decide").add_edge("small", END).add_edge("big", END)
    return g


def slow_loop() -> GraphBuilder[Cmd]:
    async def tick(s: Cmd) -> dict:
        await asyncio.sleep(0.05)
        return {"n": s.n + 1}

    def again(s: Cmd) -> Literal["tick", "__end__"]:
        return "tick" if s.n < 1000 else END

    g = GraphBuilder(Cmd, name="slow_loop")
    g.add_node(tick).add_edge(START, "tick").add_conditional_edges("tick", again)
    return g
