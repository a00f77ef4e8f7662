"""The graph W9 serves (``flowstate serve bench/w9_graph.py:REGISTRY``): a chain of
``W9_NODES`` (default 10) async nodes, each ``count += 1``."""

import os

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder


class Counter(BaseModel):
    count: int = 0


async def inc(s: Counter) -> dict:
    return {"count": s.count + 1}


def chain(n: int) -> GraphBuilder[Counter]:
    g = GraphBuilder(Counter, name="chain")
    for i in range(n):
        g.add_node(f"n{i}", inc)
    g.add_edge(START, "n0")
    for i in range(n - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{n - 1}", END)
    return g


REGISTRY = {"chain": chain(int(os.environ.get("W9_NODES", "10")))}
