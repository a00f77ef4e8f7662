"""`llm_node` on real Claude workloads (issue 18), through the real SDK and the local server:
forced structured output, the thinking fallback, max_tokens, thinking kept and replayed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeFailed
from flowstate.llm import AnthropicLLM, Message, ThinkingBlock, tool
from flowstate.nodes import LLMTruncated, llm_node, messages_reducer, tool_node
from tests.llm.conftest import TEST_KEY, TEST_MODEL
from tests.llm.messages_server import MessagesServer, message, text, thinking, tool_use

pytestmark = pytest.mark.anyio


class Verdict(BaseModel):
    """The classification of a message."""

    label: Literal["spam", "ham"]


class State(BaseModel):
    question: str = "Is 'WIN A PRIZE' spam?"
    answer: str = ""
    verdict: Verdict | None = None
    messages: Annotated[list[Message], messages_reducer] = []


def app_of(node: Any, store: str = ":memory:") -> Any:
    g = GraphBuilder(State)
    g.add_node("ask", node)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    return g.compile(store=store)


async def test_structured_output_forces_the_output_tool(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(tool_use("Verdict", {"label": "spam"})))
    node = llm_node(anthropic_llm, prompt="{question}", output=Verdict, output_field="verdict")

    result = await app_of(node).run({})

    assert result.state.verdict == Verdict(label="spam")
    assert server.bodies[0]["tool_choice"] == {"type": "tool", "name": "Verdict"}


async def test_with_thinking_structured_output_uses_auto_and_one_corrective_retry(
    server: MessagesServer,
) -> None:
    async with AnthropicLLM(
        TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, thinking=1024
    ) as llm:
        server.reply(
            message(thinking("Looks like spam."), text("It is spam.")),  # no tool call
            message(thinking("Use the tool."), tool_use("Verdict", {"label": "spam"})),
        )
        node = llm_node(llm, prompt="{question}", output=Verdict, output_field="verdict")
        result = await app_of(node).run({})

    assert result.state.verdict == Verdict(label="spam")
    assert all("tool_choice" not in b for b in server.bodies)  # a forced tool would be a 400
    correction = server.bodies[1]["messages"]
    assert correction[1]["content"][0]["type"] == "thinking"  # passed back unchanged
    assert "could not be used" in correction[2]["content"]


async def test_a_cut_off_answer_is_continued_within_the_bound(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(
        message(text("The answer is a long"), stop_reason="max_tokens"),
        message(text(" one: forty-two."), stop_reason="end_turn"),
    )
    node = llm_node(anthropic_llm, prompt="{question}", output="answer", max_tokens=5)

    result = await app_of(node).run({})

    assert result.state.answer == "The answer is a long one: forty-two."
    continued = server.bodies[1]["messages"]
    assert continued[-1] == {"role": "assistant", "content": "The answer is a long"}


async def test_past_the_bound_the_node_fails_with_llm_truncated(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(
        message(text("part one"), stop_reason="max_tokens"),
        message(text(" part two"), stop_reason="max_tokens"),
    )
    node = llm_node(
        anthropic_llm, prompt="{question}", output="answer", max_tokens=5, max_continuations=1
    )
    with pytest.raises(NodeFailed) as caught:
        await app_of(node).run({})
    assert isinstance(caught.value.__cause__, LLMTruncated)
    assert "cut off at max_tokens=5 and 1 continuation" in str(caught.value)


@tool
def lookup(term: str) -> str:
    """Look a term up."""
    raise AssertionError("a cut-off tool call must never run")


async def test_a_cut_off_tool_call_is_never_run(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(tool_use("lookup", {"term": "x"}), stop_reason="max_tokens"))
    g = GraphBuilder(State)
    g.add_node(
        "ask",
        llm_node(
            anthropic_llm,
            prompt="{question}",
            tools=[lookup],
            messages_field="messages",
            output="answer",
        ),
    )
    g.add_node("tools", tool_node([lookup], messages_field="messages"))
    g.add_edge(START, "ask")
    g.add_edge("ask", "tools")
    g.add_edge("tools", END)
    app = g.compile(store=":memory:")
    with pytest.raises(NodeFailed, match="tool call was cut off at max_tokens"):
        await app.run({})


async def test_thinking_is_kept_journaled_replayed_and_never_the_answer(
    server: MessagesServer, tmp_path: Path
) -> None:
    async with AnthropicLLM(
        TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, thinking=1024
    ) as llm:
        server.reply(message(thinking("secret reasoning"), text("Spam.")))
        node = llm_node(llm, prompt="{question}", output="answer", messages_field="messages")
        app = app_of(node, str(tmp_path / "runs.db"))
        result = await app.run({})

        assert result.state.answer == "Spam."
        stored = result.state.messages[-1].blocks
        assert isinstance(stored[0], ThinkingBlock) and stored[0].thinking == "secret reasoning"
        effects = app.store.effects(result.run_id)
        assert "secret reasoning" in effects[0].response and "signature" in effects[0].response
        replayed = await app.replay(result.run_id)
    assert replayed.identical, replayed.summary()
    assert len(server.requests) == 1  # replay called nothing
