"""Issue 18 against the local Messages API server on the real SDK: clean conversations,
tool_choice, prompt caching, extended thinking, stop sequences, error wording."""

from __future__ import annotations

import itertools
from typing import Any

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowstate.llm import (
    NO_RESULT,
    AnthropicLLM,
    LLMConfigError,
    LLMError,
    Message,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    assistant,
    clean_conversation,
    conversation_problems,
    tool_result,
    user,
)
from flowstate.llm._anthropic import _message_param

from .conftest import TEST_KEY, TEST_MODEL
from .messages_server import (
    MessagesServer,
    message,
    overloaded,
    redacted_thinking,
    text,
    thinking,
    tool_use,
)

pytestmark = pytest.mark.anyio

ADD = ToolSpec(
    name="add",
    description="Add two integers.",
    input_schema={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)


def thinking_llm(server: MessagesServer, **kw: Any) -> AnthropicLLM:
    return AnthropicLLM(TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, thinking=2048, **kw)


# --- 1. clean conversations ---------------------------------------------------------------


async def test_a_whitespace_text_block_before_a_tool_use_is_not_sent(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    turn = assistant([TextBlock(text="\n\n"), ToolUseBlock(id="t1", name="add", input={"a": 1})])
    conversation = [user("add"), turn, user([tool_result("t1", "2")])]
    # The raw conversation is what the API refuses with a 400 ...
    raw = anthropic.AsyncAnthropic(api_key=TEST_KEY, base_url=server.base_url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="non-whitespace"):
        await raw.messages.create(
            model=TEST_MODEL,
            max_tokens=50,
            messages=[_message_param(m) for m in conversation],  # type: ignore[misc]
        )
    await raw.close()
    assert conversation_problems(conversation)
    # ... and what flowstate sends is the cleaned one, which it accepts (every time).
    server.reply(message(text("2")), message(text("2")))
    for _ in range(2):
        reply = await anthropic_llm.complete(conversation, tools=[ADD])
        assert reply.text == "2"
    sent = server.bodies[-1]["messages"][1]["content"]
    assert [b["type"] for b in sent] == ["tool_use"]


def test_clean_conversation_fixes_order_pairing_and_prefill() -> None:
    convo = [
        user("q"),
        assistant(
            [ToolUseBlock(id="a", name="add", input={}), ToolUseBlock(id="b", name="add", input={})]
        ),
        user([TextBlock(text="note"), tool_result("a", "1"), tool_result("zzz", "stray")]),
        assistant("partial answer  "),
    ]
    assert len(conversation_problems(convo)) == 4
    cleaned = clean_conversation(convo)
    assert conversation_problems(cleaned) == []
    blocks = cleaned[2].blocks
    assert [b.type for b in blocks] == ["tool_result", "tool_result", "text", "text"]
    assert isinstance(blocks[1], ToolResultBlock) and blocks[1].content == NO_RESULT
    assert "stray" in blocks[3].text  # nothing the model said or got is lost
    assert cleaned[3].text == "partial answer"
    assert convo[3].text == "partial answer  "  # the input is not modified


_TEXTS = st.sampled_from(["hi", "", " ", "\n\n", "ok ", "x"])
_IDS = st.sampled_from(["t1", "t2", "t3"])
_BLOCK = st.one_of(
    _TEXTS.map(lambda t: TextBlock(text=t)),
    _IDS.map(lambda i: ToolUseBlock(id=i, name="add", input={"a": 1})),
    _IDS.map(lambda i: ToolResultBlock(tool_use_id=i, content="r")),
)
_MESSAGE = st.builds(
    lambda role, content: Message(role=role, content=content),
    st.sampled_from(["user", "assistant"]),
    st.one_of(_TEXTS, st.lists(_BLOCK, max_size=3)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conversation=st.lists(_MESSAGE, min_size=1, max_size=5))
def test_conversation_problems_predicts_the_servers_400_and_cleaning_avoids_it(
    messages_server: MessagesServer, conversation: list[Message]
) -> None:
    """Property: the server refuses a conversation exactly when `conversation_problems`
    finds something; after `clean_conversation`, all that can remain is what only the caller
    can fix (the model speaking first, a block in the wrong role's message)."""
    import httpx

    def accepted(messages: list[Message]) -> bool:
        body = {
            "model": TEST_MODEL,
            "max_tokens": 10,
            "tools": [{"name": "add", "input_schema": {"type": "object"}}],
            "messages": [_message_param(m) for m in messages],
        }
        messages_server.reset()
        messages_server.reply(message(text("ok")))
        r = httpx.post(
            f"{messages_server.base_url}/v1/messages",
            json=body,
            headers={"x-api-key": TEST_KEY, "anthropic-version": "2023-06-01"},
        )
        messages_server.reset()
        assert r.status_code in (200, 400), r.text
        return r.status_code == 200

    assert accepted(conversation) == (conversation_problems(conversation) == [])
    cleaned = clean_conversation(conversation)
    if not cleaned:
        return
    problems = conversation_problems(cleaned)
    assert accepted(cleaned) == (problems == [])
    unfixable = ("first message must be", "user message with a tool_use", "with a tool_result")
    assert all(any(u in p for u in unfixable) for p in problems), problems


@settings(max_examples=200, deadline=None)
@given(conversation=st.lists(_MESSAGE, min_size=0, max_size=6))
def test_clean_conversation_fast_path_agrees_with_the_full_cleaning(
    conversation: list[Message],
) -> None:
    """Property: a conversation `conversation_problems` finds nothing wrong with comes back
    unchanged (the same messages, not copies), exactly what the full cleaning gives; any
    other goes through the full cleaning. The input is never modified either way."""
    from flowstate.llm._models import _clean, clean_and_check

    before = [m.model_copy(deep=True) for m in conversation]
    cleaned, problems = clean_and_check(conversation)
    assert cleaned == _clean(conversation)
    assert problems == conversation_problems(cleaned)
    assert conversation == before
    if conversation and all(m.content for m in conversation):
        if not conversation_problems(conversation):
            assert all(a is b for a, b in zip(cleaned, conversation, strict=True))


# --- 3. tool_choice -----------------------------------------------------------------------


async def test_tool_choice_is_sent(server: MessagesServer, anthropic_llm: AnthropicLLM) -> None:
    server.reply(message(tool_use("add", {"a": 1, "b": 2})))
    await anthropic_llm.complete(
        [user("add")], tools=[ADD], tool_choice=ToolChoice(type="tool", name="add")
    )
    assert server.bodies[0]["tool_choice"] == {"type": "tool", "name": "add"}


async def test_forced_tool_choice_with_thinking_is_refused_by_server_and_client(
    server: MessagesServer,
) -> None:
    raw = anthropic.AsyncAnthropic(api_key=TEST_KEY, base_url=server.base_url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="forces tool use"):
        await raw.messages.create(
            model=TEST_MODEL,
            max_tokens=4000,
            thinking={"type": "enabled", "budget_tokens": 2048},
            tool_choice={"type": "any"},
            tools=[{"name": "add", "input_schema": {"type": "object"}}],
            messages=[{"role": "user", "content": "hi"}],
        )
    await raw.close()
    async with thinking_llm(server) as llm:
        with pytest.raises(LLMConfigError, match="refuses tool_choice 'tool'"):
            await llm.complete(
                [user("add")], tools=[ADD], tool_choice=ToolChoice(type="tool", name="add")
            )
    assert ToolChoice(type="auto").forced is False
    with pytest.raises(ValueError, match="name= exactly when"):
        ToolChoice(type="tool")


# --- 4. prompt caching --------------------------------------------------------------------


async def test_cache_breakpoints_stay_within_the_limit_and_reads_grow(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    system = "You are a careful assistant. " * 40
    convo: list[Message] = [user("start " * 50)]
    reads: list[int] = []
    for turn in range(6):
        call_id = f"c{turn}"
        server.reply(message(tool_use("add", {"a": turn, "b": 1}, id=call_id)))
        reply = await anthropic_llm.complete(convo, system=system, tools=[ADD], cache="auto")
        body = server.bodies[-1]
        marks = sum(1 for t in body["tools"] if "cache_control" in t)
        marks += sum(1 for b in body["system"] if "cache_control" in b)
        marks += sum(
            1
            for m in body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if "cache_control" in b
        )
        assert 2 <= marks <= 4
        reads.append(reply.usage.cache_read_input_tokens)
        if turn == 0:
            assert reply.usage.cache_creation_input_tokens > 0
        convo += [reply.to_message(), user([tool_result(call_id, str(turn + 1))])]
    assert reads[0] == 0
    assert all(b > a for a, b in itertools.pairwise(reads[1:]))
    assert reads[-1] > 10 * reply.usage.input_tokens


async def test_more_than_four_breakpoints_is_a_400(server: MessagesServer) -> None:
    cc = {"type": "ephemeral"}
    raw = anthropic.AsyncAnthropic(api_key=TEST_KEY, base_url=server.base_url, max_retries=0)
    blocks = [{"type": "text", "text": f"part {i}", "cache_control": cc} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks"):
        await raw.messages.create(
            model=TEST_MODEL, max_tokens=10, messages=[{"role": "user", "content": blocks}]
        )
    await raw.close()


async def test_no_cache_control_without_cache(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(text("ok")))
    reply = await anthropic_llm.complete([user("hi")], system="sys", tools=[ADD])
    assert "cache_control" not in str(server.bodies[0])
    assert reply.usage.cache_read_input_tokens == 0


# --- 5. extended thinking -----------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_thinking_blocks_go_back_unchanged_in_a_tool_loop(
    server: MessagesServer, streaming: bool
) -> None:
    tokens: list[str] = []
    on_token = tokens.append if streaming else None
    async with thinking_llm(server) as llm:
        server.reply(
            message(
                thinking("I should add 2 and 3."),
                redacted_thinking(),
                tool_use("add", {"a": 2, "b": 3}, id="t1"),
            ),
            message(thinking("5 it is."), text("The sum is 5.")),
        )
        first = await llm.complete([user("2+3?")], tools=[ADD], max_tokens=100, on_token=on_token)
        assert [b.type for b in first.content] == ["thinking", "redacted_thinking", "tool_use"]
        assert first.text == "" and first.thinking == "I should add 2 and 3."
        assert isinstance(first.content[0], ThinkingBlock) and first.content[0].signature
        assert isinstance(first.content[1], RedactedThinkingBlock) and first.content[1].data
        convo = [user("2+3?"), first.to_message(), user([tool_result("t1", "5")])]
        second = await llm.complete(convo, tools=[ADD], max_tokens=100, on_token=on_token)
    assert second.text == "The sum is 5."  # the thinking is never part of the answer
    assert "5 it is" not in "".join(tokens)
    sent = server.bodies[1]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 2148
    assert sent["messages"][1]["content"][0] == first.content[0].model_dump()
    assert sent["messages"][1]["content"][1] == first.content[1].model_dump()


async def test_a_changed_or_dropped_thinking_block_is_a_400(server: MessagesServer) -> None:
    async with thinking_llm(server, max_retries=0) as llm:
        server.reply(message(thinking("plan"), tool_use("add", {"a": 1, "b": 1}, id="t1")))
        first = await llm.complete([user("1+1?")], tools=[ADD], max_tokens=100)
        block = first.content[0]
        assert isinstance(block, ThinkingBlock)
        forged = block.model_copy(update={"thinking": "another plan"})
        call = first.content[1]
        for turn, match in [
            (assistant([forged, call]), "Invalid `signature`"),
            (assistant([call]), "Expected `thinking` or `redacted_thinking`"),
        ]:
            with pytest.raises(LLMError, match=match):
                await llm.complete(
                    [user("1+1?"), turn, user([tool_result("t1", "2")])], tools=[ADD]
                )


def test_thinking_budget_is_checked() -> None:
    with pytest.raises(LLMConfigError, match="at least 1024"):
        AnthropicLLM(TEST_MODEL, api_key=TEST_KEY, thinking=100)


# --- 7. stop sequences; no "even after retrying" without a retry ----------------------------


async def test_stop_sequences_are_sent_and_cut_the_answer(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(text("Action: add({})\nObservation: 42 (made up)")))
    reply = await anthropic_llm.complete([user("go")], stop_sequences=["Observation:"])
    assert server.bodies[0]["stop_sequences"] == ["Observation:"]
    assert reply.stop_reason == "stop_sequence"
    assert "made up" not in reply.text


async def test_error_text_says_how_many_retries_were_made(server: MessagesServer) -> None:
    for retries, expected in [(0, "no retry was made"), (1, "even after 1 retries")]:
        server.reply(*[overloaded() for _ in range(retries + 1)])
        async with AnthropicLLM(
            TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, max_retries=retries
        ) as llm:
            with pytest.raises(LLMError) as caught:
                await llm.complete([user("hi")])
        assert expected in str(caught.value)
        if retries == 0:
            assert "even after" not in str(caught.value)
