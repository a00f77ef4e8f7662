"""Reference graphs shared by the store tests and by the writer processes they start.

Kept free of pytest so that ``_writer.py`` can import it in a fresh interpreter. Node
functions are module-level, so the fingerprint of a graph built here is the same in every
process (it depends on node names, edges and the state schema, not on module names).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Annotated

from pydantic import BaseModel

from flowstate import END, START, CompiledGraph, GraphBuilder, NodeContext, SQLiteStore, add, append

CHAIN_LENGTH = 20


class ChainState(BaseModel):
    """State of the linear chain: every node adds ``seed`` to ``total`` and logs itself."""

    seed: int = 0
    n: int = 0
    total: Annotated[int, add] = 0
    log: Annotated[list[str], append] = []


def _double(x: int) -> int:
    return 2 * x


def _chain_node(name: str) -> Callable[[ChainState, NodeContext], Awaitable[dict[str, object]]]:
    async def node(s: ChainState, ctx: NodeContext) -> dict[str, object]:
        doubled = await ctx.effect("double", _double, s.seed)
        return {"n": s.n + 1, "total": doubled // 2, "log": name}

    node.__name__ = name
    return node


CHAIN_NODES = [f"c{i:02d}" for i in range(CHAIN_LENGTH)]


def chain_graph(store: str | SQLiteStore, length: int = CHAIN_LENGTH) -> CompiledGraph[ChainState]:
    """linear-N: START → c00 → c01 → … → END, each node journaling one effect."""
    names = CHAIN_NODES[:length]
    g = GraphBuilder(ChainState, name=f"linear_{length}")
    for name in names:
        g.add_node(name, _chain_node(name))
    g.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        g.add_edge(a, b)
    g.add_edge(names[-1], END)
    return g.compile(store=store)


def chain_final(seed: int, length: int = CHAIN_LENGTH) -> ChainState:
    """The golden final state of ``chain_graph`` for an input ``{"seed": seed}``."""
    return ChainState(seed=seed, n=length, total=seed * length, log=CHAIN_NODES[:length])


# -- the golden graph of the corruption tests: effects, an interrupt, several steps ------------


class GoldenState(BaseModel):
    n: int = 0
    answer: str = ""
    log: Annotated[list[str], append] = []


def _fetch(x: int) -> dict[str, int]:
    return {"v": 2 * x + 7}


def _lookup(x: int) -> int:
    return x + 31


async def g0(s: GoldenState, ctx: NodeContext) -> dict[str, object]:
    r = await ctx.effect("fetch", _fetch, s.n)
    return {"n": s.n + r["v"], "log": "g0"}


async def g1(s: GoldenState, ctx: NodeContext) -> dict[str, object]:
    k = await ctx.effect("lookup", _lookup, s.n)
    answer = await ctx.interrupt({"question": "approve?", "k": k, "n": s.n})
    return {"answer": str(answer), "n": s.n + 1, "log": "g1"}


async def g2(s: GoldenState) -> dict[str, object]:
    return {"n": s.n * 3, "log": "g2"}


async def g3(s: GoldenState) -> dict[str, object]:
    return {"log": f"g3:{s.n}"}


def golden_graph(store: str | SQLiteStore) -> CompiledGraph[GoldenState]:
    """START → g0 (effect) → g1 (effect + interrupt) → g2 → g3 → END."""
    g = GraphBuilder(GoldenState, name="golden")
    for fn in (g0, g1, g2, g3):
        g.add_node(fn)
    g.add_edge(START, "g0")
    g.add_edge("g0", "g1")
    g.add_edge("g1", "g2")
    g.add_edge("g2", "g3")
    g.add_edge("g3", END)
    return g.compile(store=store)
