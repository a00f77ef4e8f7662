"""A chat graph for the thread tests: each turn thinks ``LOOPS`` steps (each sleeping
``delay`` seconds and journaling an effect), then replies to the last user message.

    python tests/threads/chatgraph.py DB THREAD MESSAGE DELAY [resume RUN]

runs one turn (or resumes a run) in a child process and prints its status.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from flowstate import END, START, CompiledGraph, GraphBuilder, NodeContext, add, append

LOOPS = 4


class Chat(BaseModel):
    messages: Annotated[list[str], append] = []
    ticks: int = 0
    """Think steps of the current turn (no reducer: each turn's input resets it to 0)."""
    total: Annotated[int, add] = 0
    """Think steps of the whole thread."""


def user(text: str) -> dict[str, Any]:
    """A turn's input: a user message, and the turn's step counter reset."""
    return {"messages": [f"user: {text}"], "ticks": 0}


def make(db: Any, delay: float = 0.0) -> CompiledGraph[Chat]:
    async def think(s: Chat, ctx: NodeContext) -> dict[str, Any]:
        async def pause() -> int:
            await asyncio.sleep(delay)
            return s.ticks

        await ctx.effect("pause", pause)
        return {"ticks": s.ticks + 1, "total": 1}

    def route(s: Chat) -> Literal["think", "reply"]:
        return "think" if s.ticks < LOOPS else "reply"

    def reply(s: Chat) -> dict[str, Any]:
        last = next(m for m in reversed(s.messages) if m.startswith("user: "))
        return {"messages": [f"bot: {last[6:]} ({len(s.messages)} before)"]}

    b = GraphBuilder(Chat, name="chat")
    b.add_node("think", think)
    b.add_node("reply", reply)
    b.add_edge(START, "think")
    b.add_conditional_edges("think", route)
    b.add_edge("reply", END)
    return b.compile(store=db)


def main() -> None:
    db, thread, message, delay = sys.argv[1:5]
    app = make(db, float(delay))
    if len(sys.argv) > 6 and sys.argv[5] == "resume":
        r = app.resume_sync(sys.argv[6])
    else:
        r = app.run_sync(user(message), thread_id=thread)
    print(r.status, flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    main()
