"""Graphs the service tests serve (``tests.service.graphs:REGISTRY``).

Nodes record every call in a *separate* SQLite file named by ``$FLOWSTATE_TEST_CALLS``
(when set), so a test can count how often each node of each run really ran, across
server processes and SIGKILLs.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from flowstate import END, START, GraphBuilder, NodeContext, append
from flowstate.service import GraphRegistry

CALLS_ENV = "FLOWSTATE_TEST_CALLS"


def record_call(run_id: str, node: str) -> None:
    path = os.environ.get(CALLS_ENV)
    if not path:
        return
    with sqlite3.connect(path, timeout=30) as c:
        # WAL + NORMAL: survives the SIGKILL of the server process without an fsync per call
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("CREATE TABLE IF NOT EXISTS calls (run_id TEXT, node TEXT, at REAL)")
        c.execute("INSERT INTO calls VALUES (?, ?, ?)", [run_id, node, time.time()])


def calls(path: str) -> list[tuple[str, str, float]]:
    if not os.path.exists(path):
        return []
    with sqlite3.connect(path, timeout=30) as c:
        try:
            return [tuple(r) for r in c.execute("SELECT run_id, node, at FROM calls")]
        except sqlite3.OperationalError:
            return []


# -- steps: a linear pipeline of five nodes ----------------------------------------------

STEP_NODES = [f"s{i}" for i in range(5)]


class Work(BaseModel):
    label: str = ""
    delay: float = Field(default=0.0, ge=0, le=5)
    log: Annotated[list[str], append] = []


def _stage(name: str):
    async def stage(s: Work, ctx: NodeContext) -> dict:
        record_call(ctx.run_id, name)
        if s.delay:
            await asyncio.sleep(s.delay)
        return {"log": [name]}

    stage.__name__ = name
    return stage


def steps_graph() -> GraphBuilder[Work]:
    g = GraphBuilder(Work, name="steps")
    prev = START
    for n in STEP_NODES:
        g.add_node(_stage(n))
        g.add_edge(prev, n)
        prev = n
    g.add_edge(prev, END)
    return g


# -- approval: a human answers an interrupt ------------------------------------------------


class Approval(BaseModel):
    amount: int = 0
    decision: str | None = None
    done: bool = False


async def ask(s: Approval, ctx: NodeContext) -> dict:
    answer = await ctx.interrupt({"question": "approve?", "amount": s.amount})
    return {"decision": str(answer)}


def apply(s: Approval) -> dict:
    return {"done": True}


def approval_graph() -> GraphBuilder[Approval]:
    g = GraphBuilder(Approval, name="approval")
    g.add_node(ask).add_node(apply)
    g.add_edge(START, "ask").add_edge("ask", "apply").add_edge("apply", END)
    return g


# -- slow: a long node for cancellation -----------------------------------------------------


class Slow(BaseModel):
    ticks: int = Field(default=200, ge=0, le=10_000)
    mode: Literal["async", "sync"] = "async"
    done: Annotated[list[str], append] = []


def tick(n: int) -> int:
    return n


async def long(s: Slow, ctx: NodeContext) -> dict:
    record_call(ctx.run_id, "long")
    if s.mode == "sync":
        await asyncio.to_thread(time.sleep, s.ticks * 0.05)
    else:
        for i in range(s.ticks):
            await ctx.effect("tick", tick, i)
            await asyncio.sleep(0.05)
    return {"done": ["long"]}


def after(s: Slow, ctx: NodeContext) -> dict:
    record_call(ctx.run_id, "after")
    return {"done": ["after"]}


def slow_graph() -> GraphBuilder[Slow]:
    g = GraphBuilder(Slow, name="slow")
    g.add_node(long).add_node(after)
    g.add_edge(START, "long").add_edge("long", "after").add_edge("after", END)
    return g


def sleepy(s: Slow) -> dict:
    """A sync node: it runs in a worker thread and cannot be interrupted mid-sleep."""
    time.sleep(s.ticks * 0.05)
    return {"done": ["sleepy"]}


def sync_graph() -> GraphBuilder[Slow]:
    g = GraphBuilder(Slow, name="slow_sync")
    g.add_node(sleepy).add_node(after)
    g.add_edge(START, "sleepy").add_edge("sleepy", "after").add_edge("after", END)
    return g


# -- flaky: fails until fixed ----------------------------------------------------------------

BROKEN = {"flaky": True}


class Flaky(BaseModel):
    n: int = 0


def fragile(s: Flaky) -> dict:
    if BROKEN["flaky"]:
        raise RuntimeError("fragile is broken today")
    return {"n": s.n + 1}


def flaky_graph() -> GraphBuilder[Flaky]:
    g = GraphBuilder(Flaky, name="flaky")
    g.add_node(fragile).add_edge(START, "fragile").add_edge("fragile", END)
    return g


# -- echo: typed fields for schema fuzzing ---------------------------------------------------


class Note(BaseModel):
    text: str = Field(max_length=200)
    count: int = Field(default=1, ge=0, le=100)
    tags: Annotated[list[str], append] = Field(default=[], max_length=10)
    ratio: float = 0.5
    urgent: bool = False


def echo(s: Note) -> dict:
    return {"tags": [f"{s.text[:20]}x{s.count}"]}


def echo_graph() -> GraphBuilder[Note]:
    g = GraphBuilder(Note, name="echo")
    g.add_node(echo).add_edge(START, "echo").add_edge("echo", END)
    return g


def registry() -> GraphRegistry:
    return GraphRegistry(
        [
            steps_graph(),
            approval_graph(),
            slow_graph(),
            sync_graph(),
            flaky_graph(),
            echo_graph(),
        ]
    )


REGISTRY = registry()
