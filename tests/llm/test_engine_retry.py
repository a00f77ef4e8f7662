"""Issue 15 item 5 end to end: the engine's default RetryPolicy retries a provider's
overload and rate limit (real SDK, local Messages API server) and not a bad request."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, NodeFailed, RetryPolicy
from flowstate.llm import AnthropicLLM, user

from .conftest import TEST_KEY, TEST_MODEL
from .messages_server import error, message, overloaded, text


class S(BaseModel):
    said: str = ""


def _app(tmp_path, server, name):
    async def ask(s: S, ctx: NodeContext) -> dict:
        r = await ctx.llm.complete([user("hi")])
        return {"said": r.text}

    g = GraphBuilder(S).add_node(ask, retry=RetryPolicy(max_attempts=3, initial_delay=0.001))
    g.add_edge(START, "ask").add_edge("ask", END)
    app = g.compile(store=str(tmp_path / f"{name}.db"))
    # the SDK's own retries off: what is retried here is the engine's doing
    app.services["llm"] = AnthropicLLM(
        TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, max_retries=0, timeout=10.0
    )
    return app


@pytest.mark.anyio
async def test_overload_and_rate_limit_are_retried(tmp_path, server):
    server.reply(
        overloaded(),
        error(429, "rate_limit_error", "slow down", headers={"retry-after-ms": "1"}),
        message(text("ok")),
    )
    app = _app(tmp_path, server, "a")
    r = await app.run({}, run_id="r")
    assert r.state.said == "ok"
    assert [a.attempt for a in app.store.attempts("r")] == [1, 2]


@pytest.mark.anyio
async def test_a_bad_request_is_not_retried(tmp_path, server):
    server.reply(error(400, "invalid_request_error", "bad"))
    app = _app(tmp_path, server, "b")
    with pytest.raises(NodeFailed):
        await app.run({}, run_id="r")
    assert [a.attempt for a in app.store.attempts("r")] == [1]
