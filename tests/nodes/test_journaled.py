"""`JournaledLLM` and `JournaledTools` against a minimal effect context (no engine): the
LLM layer only needs something with `effect`, `token` and `add_usage`."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import Counter
from typing import Any

import pytest

from flowstate import NodeContext
from flowstate.llm import (
    LLM,
    EffectContext,
    JournaledLLM,
    JournaledTools,
    LLMRequest,
    LLMResponse,
    ScriptedLLM,
    ToolCall,
    ToolRegistry,
    tool,
    user,
)

pytestmark = pytest.mark.anyio


class MemoryContext:
    """The effect journal reduced to a dict: seq -> (name, request, response)."""

    def __init__(self, journal: dict[int, tuple[str, str, str]] | None = None) -> None:
        self.journal = journal if journal is not None else {}
        self.seq = 0
        self.live: list[str] = []
        self.tokens: list[str] = []
        self.usage: Counter[str] = Counter()

    async def effect(
        self, name: str, fn: Any, *args: Any, result_type: Any = None, **kwargs: Any
    ) -> Any:
        seq = self.seq
        self.seq += 1
        request = json.dumps({"args": list(args), "kwargs": kwargs})
        recorded = self.journal.get(seq)
        if recorded is not None and recorded[:2] == (name, request):
            return json.loads(recorded[2])
        self.live.append(name)
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        self.journal[seq] = (name, request, json.dumps(result))
        return json.loads(self.journal[seq][2])

    def token(self, text: str) -> None:
        self.tokens.append(text)

    def add_usage(self, input_tokens: int = 0, output_tokens: int = 0, **counts: int) -> None:
        self.usage.update(input_tokens=input_tokens, output_tokens=output_tokens)


def test_the_wrappers_fit_the_protocols() -> None:
    ctx = MemoryContext()
    assert isinstance(ctx, EffectContext)
    assert isinstance(JournaledLLM(ScriptedLLM([]), ctx), LLM)
    assert set(inspect.signature(NodeContext.effect).parameters) >= {"name", "fn", "result_type"}


async def test_a_model_call_is_journaled_then_served_without_calling_the_model() -> None:
    script = [{"text": "Hello there", "usage": {"input_tokens": 7, "output_tokens": 2}}]
    model = ScriptedLLM(script)
    ctx = MemoryContext()
    seen: list[str] = []

    first = await JournaledLLM(model, ctx).complete(
        [user("hi")], system="sys", max_tokens=50, on_token=seen.append
    )

    assert first.text == "Hello there"
    assert ctx.live == ["llm.complete"]
    assert "".join(ctx.tokens) == "Hello there" and seen == ctx.tokens
    assert ctx.usage == {"input_tokens": 7, "output_tokens": 2}
    name, request, response = ctx.journal[0]
    assert name == "llm.complete"
    journaled = LLMRequest.model_validate(json.loads(request)["args"][0])
    assert journaled == LLMRequest(
        messages=[user("hi")], system="sys", max_tokens=50, model="scripted"
    )
    assert LLMResponse.model_validate_json(response) == first

    # The activation runs again (resume): same request, journal served, nothing live.
    again = MemoryContext(ctx.journal)
    exhausted = ScriptedLLM([])  # raises ScriptExhausted if it is asked anything
    second = await JournaledLLM(exhausted, again).complete(
        [user("hi")], system="sys", max_tokens=50
    )
    assert second == first
    assert again.live == [] and again.tokens == [] and exhausted.requests == []
    assert again.usage == {"input_tokens": 7, "output_tokens": 2}  # counted on every call


async def test_a_different_request_is_not_served_from_the_journal() -> None:
    ctx = MemoryContext()
    await JournaledLLM(ScriptedLLM(["a"]), ctx).complete([user("one")])
    again = MemoryContext(ctx.journal)
    reply = await JournaledLLM(ScriptedLLM(["b"]), again).complete([user("two")])
    assert reply.text == "b" and again.live == ["llm.complete"]


async def test_stream_false_emits_no_tokens() -> None:
    ctx = MemoryContext()
    await JournaledLLM(ScriptedLLM(["quiet words"]), ctx, stream=False).complete([user("x")])
    assert ctx.tokens == []


async def test_tool_calls_are_journaled_per_call_in_order() -> None:
    runs: Counter[str] = Counter()

    @tool
    async def slow(n: int) -> int:
        """Slow square."""
        runs[f"slow{n}"] += 1
        await asyncio.sleep(0.02 * (3 - n))  # finishes in reverse order
        return n * n

    @tool
    def fails() -> str:
        """Always fails."""
        runs["fails"] += 1
        raise RuntimeError("boom")

    registry = ToolRegistry([slow, fails])
    calls = [
        ToolCall(id="c0", name="slow", input={"n": 0}),
        ToolCall(id="c1", name="fails"),
        ToolCall(id="c2", name="slow", input={"n": 2}),
    ]
    ctx = MemoryContext()

    outcomes = await JournaledTools(registry, ctx).run_calls(calls)

    assert [o.tool_use_id for o in outcomes] == ["c0", "c1", "c2"]
    assert [o.content for o in outcomes] == ["0", "RuntimeError: boom", "4"]
    assert outcomes[1].is_error
    assert [ctx.journal[i][0] for i in range(3)] == ["tool:slow", "tool:fails", "tool:slow"]
    assert [json.loads(ctx.journal[i][1])["args"][0]["id"] for i in range(3)] == [
        "c0",
        "c1",
        "c2",
    ]

    # Re-run after a crash that lost the record of the last call: only that call runs again.
    partial = {k: v for k, v in ctx.journal.items() if k != 2}
    again = MemoryContext(partial)
    replayed = await JournaledTools(registry, again).run_calls(calls)
    assert replayed == outcomes
    assert again.live == ["tool:slow"]
    assert runs == {"slow0": 1, "fails": 1, "slow2": 2}
