"""A slow chain whose nodes log every execution to a side file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder


class Count(BaseModel):
    n: int = 0


def slow_chain(calls: Path, length: int = 12, delay: float = 0.25) -> GraphBuilder[Count]:
    def make(i: int):
        def node(s: Count) -> dict:
            time.sleep(delay)
            with open(calls, "a") as f:
                f.write(f"n{i} {os.getpid()}\n")
            return {"n": s.n + 1}

        node.__name__ = f"n{i}"
        return node

    g = GraphBuilder(Count, name="slow_chain")
    prev = START
    for i in range(length):
        g.add_node(make(i)).add_edge(prev, f"n{i}")
        prev = f"n{i}"
    return g.add_edge(prev, END)
