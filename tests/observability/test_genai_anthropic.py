"""The GenAI span of a real ``anthropic`` SDK call against the local Messages API server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext
from flowstate.llm import AnthropicLLM, user
from tests.llm.messages_server import MessagesServer, message, text

from .conftest import Telemetry, attrs


@pytest.fixture(scope="module")
def server() -> Iterator[MessagesServer]:
    with MessagesServer() as s:
        yield s


class Chat(BaseModel):
    reply: str = ""


def chat_graph() -> GraphBuilder[Chat]:
    async def ask(s: Chat, ctx: NodeContext) -> dict:
        r = await ctx.llm.complete([user("hello")], system="be brief", max_tokens=100)
        return {"reply": r.text}

    g = GraphBuilder(Chat, name="chat")
    g.add_node(ask).add_edge(START, "ask").add_edge("ask", END)
    return g


def test_llm_call_span_follows_the_genai_conventions(
    otel: Telemetry, server: MessagesServer, tmp_path: Path
):
    server.reply(message(text("hi there"), usage=(21, 7), model="claude-test-20260101"))

    async def go() -> str:
        app = chat_graph().compile(store=str(tmp_path / "runs.db"))
        async with AnthropicLLM(
            "claude-test", api_key="k", base_url=server.base_url, max_retries=0, timeout=10.0
        ) as llm:
            app.services["llm"] = llm
            r = await app.run({})
            # resumed/replayed calls are served from the journal: no new GenAI span
            await app.replay(r.run_id)
            return r.state.reply

    assert asyncio.run(go()) == "hi there"
    chats = otel.named("chat ")
    assert len(chats) == 1, [s.name for s in otel.spans()]
    a = attrs(chats[0])
    assert chats[0].name == "chat claude-test"
    assert a["gen_ai.system"] == "anthropic"
    assert a["gen_ai.request.model"] == "claude-test"
    assert a["gen_ai.response.model"] == "claude-test-20260101"
    assert a["gen_ai.usage.input_tokens"] == 21
    assert a["gen_ai.usage.output_tokens"] == 7
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("end_turn",)
    assert "gen_ai.system_instructions" not in a
    served = [
        s
        for s in otel.named("flowstate.effect llm.complete")
        if attrs(s)["flowstate.effect.replayed"]
    ]
    assert len(served) == 1, "the replay's call was served from the journal"
    assert otel.total("flowstate.llm.tokens", **{"gen_ai.token.type": "input"}) == 21
    durations = otel.points("gen_ai.client.operation.duration")
    assert [v[0] for _, v in durations] == [1]


def test_a_failed_llm_call_marks_its_spans(otel: Telemetry, server: MessagesServer, tmp_path: Path):
    from opentelemetry.trace import StatusCode

    from flowstate.errors import NodeFailed
    from tests.llm.messages_server import overloaded

    server.reply(overloaded())

    async def go() -> None:
        app = chat_graph().compile(store=str(tmp_path / "runs.db"))
        async with AnthropicLLM(
            "claude-test", api_key="k", base_url=server.base_url, max_retries=0, timeout=10.0
        ) as llm:
            app.services["llm"] = llm
            await app.run({})

    with pytest.raises(NodeFailed):
        asyncio.run(go())
    chat = otel.one("chat claude-test")
    effect = otel.one("flowstate.effect llm.complete")
    node = otel.one("flowstate.node ask")
    for span in (chat, effect, node):
        assert span.status.status_code == StatusCode.ERROR, span.name
    assert attrs(chat)["error.type"] == attrs(effect)["error.type"]
    assert attrs(node)["flowstate.outcome"] == "failed"
    assert "gen_ai.usage.input_tokens" not in attrs(chat)
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert point[0]["error.type"] == attrs(chat)["error.type"]
