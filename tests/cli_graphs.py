"""Graphs the CLI tests point at (module:attr)."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, append


class Counter(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []


def step_a(s: Counter) -> dict:
    return {"n": s.n + 1, "log": "a"}


def step_b(s: Counter) -> dict:
    if os.environ.get("CLI_TEST_FAIL") == "1":
        raise RuntimeError("b is broken today")
    return {"n": s.n + 10, "log": "b"}


def builder() -> GraphBuilder[Counter]:
    g = GraphBuilder(Counter, name="counter")
    g.add_node(step_a).add_node(step_b)
    g.add_edge(START, "step_a").add_edge("step_a", "step_b").add_edge("step_b", END)
    return g


graph = builder()


stored = builder().compile(store=os.environ.get("CLI_TEST_STORE", "graph-own.db"))
"""A graph that names its own store (a relative path: the tests chdir to a temp dir)."""


def needs_model(llm: object) -> GraphBuilder[Counter]:
    """A graph factory that needs a model (like the prebuilt graphs)."""
    return builder()


REGISTRY = [builder().compile(store=":memory:")]
"""What `flowstate serve` is pointed at."""
