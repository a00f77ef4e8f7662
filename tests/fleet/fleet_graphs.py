"""Graphs the fleet tests enqueue and their workers run (``--graphs
tests.fleet.fleet_graphs:REGISTRY``, loaded in each worker process).

- ``chain``: ``FLEET_NODES`` nodes in a row, each sleeping ``FLEET_SLEEP`` seconds and
  appending its name to ``seen``: a run completed exactly once has ``seen == n0..nK``.
- ``boom``: its one node always raises (a bug, never retried by the node's policy).
- ``crasher``: its one node kills the worker process executing it (``os._exit``).
- ``ask``: asks a question (an interrupt) and records the answer.
- ``sleeper``: one node that sleeps ``FLEET_SLEEP`` seconds per step, ``FLEET_NODES`` steps.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, append


class S(BaseModel):
    n: int = 0
    seen: Annotated[list[str], append] = []
    answer: Any = None


NODES = int(os.environ.get("FLEET_NODES", "5"))
SLEEP = float(os.environ.get("FLEET_SLEEP", "0.05"))


def chain(nodes: int = NODES, sleep: float = SLEEP, name: str = "chain") -> Any:
    b = GraphBuilder(S, name=name)
    prev: str = START
    for i in range(nodes):
        node_name = f"n{i}"

        async def node(s: S, _name: str = node_name) -> dict[str, Any]:
            if sleep:
                await asyncio.sleep(sleep)
            return {"n": s.n + 1, "seen": [_name]}

        b.add_node(node_name, node)
        b.add_edge(prev, node_name)
        prev = node_name
    b.add_edge(prev, END)
    return b.compile()


def boom() -> Any:
    b = GraphBuilder(S, name="boom")

    def explode(s: S) -> dict[str, Any]:
        raise ValueError("the node is broken")

    b.add_node("explode", explode)
    b.add_edge(START, "explode")
    b.add_edge("explode", END)
    return b.compile()


def crasher() -> Any:
    b = GraphBuilder(S, name="crasher")

    def die(s: S) -> dict[str, Any]:
        os._exit(9)

    b.add_node("die", die)
    b.add_edge(START, "die")
    b.add_edge("die", END)
    return b.compile()


def ask() -> Any:
    b = GraphBuilder(S, name="ask")

    def question(s: S, ctx: NodeContext) -> dict[str, Any]:
        return {"answer": ctx.interrupt({"question": "go on?"})}

    b.add_node("question", question)
    b.add_edge(START, "question")
    b.add_edge("question", END)
    return b.compile()


REGISTRY = {g.name: g for g in (chain(), boom(), crasher(), ask())}
CHAIN = REGISTRY["chain"]
