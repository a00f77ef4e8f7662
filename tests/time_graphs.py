"""Graphs of the durable-time tests, importable by child processes (``-m flowstate.cli``).

``TIME_HOLD`` (seconds) is the sleep's in-process hold; ``TIME_COUNTER`` names a file that
gets one line each time the ``prep`` effect really runs (to prove it ran once)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder


class S(BaseModel):
    log: list[str] = []
    n: int = 0


def _bump(tag: str) -> int:
    path = os.environ.get("TIME_COUNTER")
    if not path:
        return 0
    with open(path, "a") as f:
        f.write(tag + "\n")
    with open(path) as f:
        return len(f.read().splitlines())


async def nap(s: S, ctx: Any) -> dict[str, Any]:
    await ctx.effect("prep", _bump, "prep")
    await ctx.sleep(3600, hold=float(os.environ.get("TIME_HOLD", "0")))
    return {"log": [*s.log, "woke"]}


_g = GraphBuilder(S, name="sleeper")
_g.add_node("nap", nap)
_g.add_edge(START, "nap")
_g.add_edge("nap", END)
sleeper = _g.compile()


def inc(s: S) -> dict[str, Any]:
    return {"n": s.n + 1}


_t = GraphBuilder(S, name="ticker")
_t.add_node("inc", inc)
_t.add_edge(START, "inc")
_t.add_edge("inc", END)
ticker = _t.compile()
