"""Graphs the inspector tests serve (``tests.inspector.graphs:REGISTRY``).

``review``: an LLM researches (a scripted model, journaled as a conversation), a tool
drafts, a subgraph polishes, a human approves through an interrupt; a rejection loops
back to drafting, so nodes have visit counts above one.
``counter``: one node looping ``target`` times, for 10,000-step runs.
``waiter``: a slow node, for live updates, pause and cancel.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from flowstate import END, START, GraphBuilder, Limits, NodeContext, RetryPolicy, append
from flowstate.llm import LLMRequest, LLMResponse, Message, ScriptedLLM, Usage
from flowstate.service import GraphRegistry

# -- review --------------------------------------------------------------------------


class Review(BaseModel):
    topic: str = "durable agents"
    facts: Annotated[list[str], append] = []
    draft: str = ""
    polished: str = ""
    approved: bool = False
    feedback: Annotated[list[str], append] = []
    rounds: int = 0


def _answer(request: LLMRequest) -> LLMResponse:
    topic = str(request.messages[-1].content).removeprefix("Research ")[:80]
    return LLMResponse(
        text=f"Three facts about {topic}: checkpoints, journals, replay.",
        usage=Usage(input_tokens=120, output_tokens=30),
    )


async def research(s: Review, ctx: NodeContext) -> dict:
    reply = await ctx.llm.complete(
        [Message(role="user", content=f"Research {s.topic}")],
        system="You are a careful researcher.",
    )
    return {"facts": [reply.text]}


def word_count(text: str) -> int:
    return len(text.split())


CHANGED = {"write": False}
"""Set ``CHANGED["write"] = True`` to change the node's code: replays then diverge."""


async def write(s: Review, ctx: NodeContext) -> dict:
    words = await ctx.effect("word_count", word_count, " ".join(s.facts))
    note = f" (revised after: {s.feedback[-1]})" if s.feedback else ""
    kind = "an improved" if CHANGED["write"] else "A"
    return {"draft": f"{kind} {words}-word draft on {s.topic}{note}", "rounds": s.rounds + 1}


class Text(BaseModel):
    draft: str = ""
    polished: str = ""


def tidy(s: Text) -> dict:
    return {"polished": s.draft.strip().capitalize() + "."}


def polish_graph() -> GraphBuilder[Text]:
    g = GraphBuilder(Text, name="polish")
    g.add_node(tidy).add_edge(START, "tidy").add_edge("tidy", END)
    return g


async def approve(s: Review, ctx: NodeContext) -> dict:
    answer = await ctx.interrupt({"question": "Publish this draft?", "draft": s.polished})
    if isinstance(answer, dict) and not answer.get("ok", False):
        return {"approved": False, "feedback": [str(answer.get("note", "rejected"))]}
    return {"approved": bool(answer)}


def route(s: Review) -> Literal["write", "__end__"]:
    return END if s.approved or s.rounds >= 3 else "write"


def review_graph() -> GraphBuilder[Review]:
    g = GraphBuilder(Review, name="review")
    g.add_node(research).add_node(write)
    g.add_node("polish", polish_graph().compile())
    g.add_node(approve)
    g.add_edge(START, "research").add_edge("research", "write")
    g.add_edge("write", "polish").add_edge("polish", "approve")
    g.add_conditional_edges("approve", route)
    return g


# -- counter -------------------------------------------------------------------------


class Count(BaseModel):
    n: int = 0
    target: int = Field(default=10, ge=0, le=1_000_000)
    last: str = ""


def bump(s: Count) -> dict:
    return {"n": s.n + 1, "last": f"bumped to {s.n + 1}"}


def more(s: Count) -> Literal["bump", "__end__"]:
    return "bump" if s.n < s.target else END


def counter_graph() -> GraphBuilder[Count]:
    g = GraphBuilder(Count, name="counter")
    g.add_node(bump).add_edge(START, "bump").add_conditional_edges("bump", more)
    return g


# -- waiter --------------------------------------------------------------------------


class Wait(BaseModel):
    seconds: float = Field(default=0.3, ge=0, le=30)
    limit: int = Field(default=40, ge=1, le=100_000)
    ticks: Annotated[list[int], append] = []


async def tick(s: Wait) -> dict:
    await asyncio.sleep(s.seconds)
    return {"ticks": [len(s.ticks) + 1]}


def again(s: Wait) -> Literal["tick", "__end__"]:
    return "tick" if len(s.ticks) < s.limit else END


def waiter_graph() -> GraphBuilder[Wait]:
    g = GraphBuilder(Wait, name="waiter")
    g.add_node(tick).add_edge(START, "tick").add_conditional_edges("tick", again)
    return g


# -- shaky: a node that fails once, then succeeds on retry; broken: one that always fails


class Flaky(BaseModel):
    done: Annotated[list[str], append] = []


_tries: dict[str, int] = {}


def shaky(s: Flaky, ctx: NodeContext) -> dict:
    _tries[ctx.run_id] = _tries.get(ctx.run_id, 0) + 1
    if _tries[ctx.run_id] == 1:
        raise RuntimeError("the network blinked")
    return {"done": ["shaky"]}


def fragile(s: Flaky) -> dict:
    raise ValueError("fragile is broken")


def shaky_graph() -> GraphBuilder[Flaky]:
    g = GraphBuilder(Flaky, name="shaky")
    retry = RetryPolicy(max_attempts=3, initial_delay=0.01, retry_on=(RuntimeError,))
    g.add_node(shaky, retry=retry).add_node(fragile)
    g.add_edge(START, "shaky").add_edge("shaky", "fragile").add_edge("fragile", END)
    return g


# -- nested: an interrupt inside a subgraph ---------------------------------------------


class Ask(BaseModel):
    answer: str = ""


async def ask(s: Ask, ctx: NodeContext) -> dict:
    return {"answer": str(await ctx.interrupt({"question": "name?"}))}


def nested_graph() -> GraphBuilder[Ask]:
    inner = GraphBuilder(Ask, name="asker")
    inner.add_node(ask).add_edge(START, "ask").add_edge("ask", END)
    g = GraphBuilder(Ask, name="nested")
    g.add_node("inner", inner.compile()).add_edge(START, "inner").add_edge("inner", END)
    return g


def registry() -> GraphRegistry:
    prices = Limits(input_price_per_mtok=3.0, output_price_per_mtok=15.0)
    reg = GraphRegistry(
        [
            review_graph().compile(limits=prices),
            counter_graph(),
            waiter_graph(),
            shaky_graph(),
            nested_graph(),
        ]
    )
    reg["review"].services["llm"] = ScriptedLLM(_answer)
    return reg


REGISTRY = registry()
