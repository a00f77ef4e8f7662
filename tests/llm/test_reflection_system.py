"""Reflection memory sends its instructions as the system prompt (issue 18, item 7), through
the engine's journaled call and the real SDK against the local Messages API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext
from flowstate.llm import AnthropicLLM

from .messages_server import MessagesServer, message, text

pytestmark = pytest.mark.anyio


class Notes(BaseModel):
    facts: list[str]
    insights: list[str] = []


async def test_reflection_instructions_go_in_system_not_in_the_user_message(
    server: MessagesServer, anthropic_llm: AnthropicLLM, tmp_path: Path
) -> None:
    async def learn(s: Notes, ctx: NodeContext) -> dict[str, Any]:
        mem = ctx.memory("crew", "reflection", every=2)
        for f in s.facts:
            mem.add(f)
        return {"insights": [e.content for e in await mem.reflect()]}

    g = GraphBuilder(Notes).add_node(learn).add_edge(START, "learn").add_edge("learn", END)
    app = g.compile(store=str(tmp_path / "m.db"))
    app.services["llm"] = anthropic_llm
    server.reply(message(text("- the user drinks tea")))

    result = await app.run({"facts": ["tea at 9", "tea at 11"]})

    assert result.state.insights == ["the user drinks tea"]
    body = server.bodies[0]
    assert body["system"].startswith("You distil an agent's memories")
    assert "You distil" not in str(body["messages"])
    assert "tea at 11" in str(body["messages"])
