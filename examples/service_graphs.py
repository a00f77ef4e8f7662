"""Graphs to serve over HTTP: ``flowstate serve examples.service_graphs:REGISTRY``.

The registry is the server's allow-list: clients start tasks of these graphs by name and
never send code. ``support`` drafts a reply to a ticket (a journaled effect; swap in an LLM
through ``ctx.services``) and waits for a human to approve it (an interrupt answered with
``POST /v1/tasks/{id}/resume {"value": true}``); ``triage`` is a one-step graph.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from flowstate import END, START, GraphBuilder, NodeContext, append
from flowstate.service import GraphRegistry


class Ticket(BaseModel):
    text: str = Field(min_length=1, max_length=5000, description="The customer's message.")
    category: Literal["billing", "bug", "other"] | None = None
    reply: str | None = None
    approved: bool | None = None
    log: Annotated[list[str], append] = []


def classify(t: Ticket) -> dict:
    words = t.text.lower()
    category = "billing" if "invoice" in words or "refund" in words else "other"
    if "error" in words or "crash" in words:
        category = "bug"
    return {"category": category, "log": [f"classified as {category}"]}


def write_reply(text: str, category: str) -> str:
    """The impure part (an LLM call in a real deployment): journaled, so a resumed task
    reuses the draft instead of asking again."""
    opening = {"billing": "About your invoice:", "bug": "Thanks for the report:"}
    return f"{opening.get(category, 'Thanks for writing:')} we are on it ({len(text)} chars read)."


async def draft(t: Ticket, ctx: NodeContext) -> dict:
    reply = await ctx.effect("write_reply", write_reply, t.text, t.category or "other")
    return {"reply": reply, "log": ["drafted"]}


async def approve(t: Ticket, ctx: NodeContext) -> dict:
    answer = await ctx.interrupt({"question": "send this reply?", "reply": t.reply})
    return {"approved": bool(answer), "log": ["approved" if answer else "rejected"]}


def send(t: Ticket) -> dict:
    return {"log": ["sent"]}


def sent_or_not(t: Ticket) -> Literal["send", "__end__"]:
    return "send" if t.approved else END


def support() -> GraphBuilder[Ticket]:
    g = GraphBuilder(Ticket, name="support")
    g.add_node(classify).add_node(draft).add_node(approve).add_node(send)
    g.add_edge(START, "classify").add_edge("classify", "draft").add_edge("draft", "approve")
    g.add_conditional_edges("approve", sent_or_not)
    g.add_edge("send", END)
    return g


def triage() -> GraphBuilder[Ticket]:
    g = GraphBuilder(Ticket, name="triage")
    g.add_node(classify).add_edge(START, "classify").add_edge("classify", END)
    return g


REGISTRY = GraphRegistry([support(), triage()])
