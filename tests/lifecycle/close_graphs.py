"""A fan-out whose step close can fail after every activation committed (issue 16 item 5).

Toggles are files in ``d`` so a child process sees them too:

- ``kind`` holds ``conflict`` (the ``Send`` activations all write ``n``, which has no
  reducer: a dynamic ``WriteConflict``) or ``reducer`` (they write ``total``, whose custom
  reducer refuses a merged total over 350, which no single activation reaches, until
  ``reducer_fixed`` exists);
- ``node_fixed``: the activations write ``parts`` (append reducer) instead: the node fix;
- ``slow``: the activation of item 2 waits (60 s) after its effect, for a kill -9.

Every activation performs one journaled effect, logged to ``d/calls``; node executions
are logged to ``d/runs``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, Send, append
from flowstate.engine import NodeContext


class Item(BaseModel):
    x: int


def make(d: Path) -> GraphBuilder:
    def picky(old: int, new: int) -> int:
        if old + new > 350 and not (d / "reducer_fixed").exists():
            raise ValueError(f"refuses a total of {old + new} (over 350)")
        return old + new

    class S(BaseModel):
        items: list[int] = []
        n: int = 0
        total: Annotated[int, picky] = 0
        parts: Annotated[list[int], append] = []

    def fetch(x: int) -> int:
        with open(d / "calls", "a") as f:
            f.write(f"{x} {os.getpid()}\n")
        return x * 100

    async def work(i: Item, ctx: NodeContext) -> dict:
        v = await ctx.effect("fetch", fetch, i.x)
        with open(d / "runs", "a") as f:
            f.write(f"{i.x} {os.getpid()}\n")
        if i.x == 2 and (d / "slow").exists():
            await asyncio.sleep(60)
        if (d / "node_fixed").exists():
            return {"parts": [v]}
        if (d / "kind").read_text().strip() == "conflict":
            return {"n": v}
        return {"total": v}

    g = GraphBuilder(S, name="close_fail").add_node("split", lambda s: None).add_node(work)
    g.add_node("done", lambda s: {"n": s.n + 1})
    g.add_edge(START, "split")
    g.add_conditional_edges("split", lambda s: [Send("work", Item(x=v)) for v in s.items], ["work"])
    g.add_edge("work", "done").add_edge("done", END)
    return g


def lines(p: Path) -> list[str]:
    return p.read_text().split("\n")[:-1] if p.exists() else []
