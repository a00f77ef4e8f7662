"""AnthropicLLM through the real anthropic SDK against the local Messages API server."""

from __future__ import annotations

import json
import socket
import time

import anthropic
import pytest

from flowstate.llm import (
    LLM,
    AnthropicLLM,
    LLMConfigError,
    LLMError,
    ToolCall,
    ToolRegistry,
    ToolSpec,
    assistant,
    tool,
    tool_result,
    user,
)

from .conftest import TEST_KEY, TEST_MODEL
from .messages_server import (
    MessagesServer,
    Reply,
    api_key_of,
    error,
    malformed,
    message,
    overloaded,
    text,
    tool_use,
)

pytestmark = pytest.mark.anyio


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


async def test_text_completion(server: MessagesServer, anthropic_llm: AnthropicLLM) -> None:
    server.reply(message(text("Hello, "), text("world."), usage=(12, 3)))

    response = await anthropic_llm.complete([user("Say hello")])

    assert response.text == "Hello, world."
    assert response.tool_calls == []
    assert response.stop_reason == "end_turn"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.model == "claude-test"
    assert response.to_message().role == "assistant"
    (sent,) = server.requests
    assert sent.path == "/v1/messages"
    assert api_key_of(sent.headers) == TEST_KEY
    assert sent.headers["anthropic-version"]
    assert sent.body == {
        "model": TEST_MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Say hello"}],
    }


async def test_system_prompt_and_max_tokens_are_sent(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(text("ok")))

    await anthropic_llm.complete([user("hi")], system="You are terse.", max_tokens=77)

    body = server.bodies[0]
    assert body["system"] == "You are terse."
    assert body["max_tokens"] == 77
    assert "tools" not in body
    assert "temperature" not in body


async def test_temperature_is_refused_before_calling_the_current_api(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    with pytest.raises(LLMConfigError, match="removed sampling parameters") as caught:
        await anthropic_llm.complete([user("hi")], temperature=0.2)

    assert "2023-06-01" in str(caught.value)
    assert server.requests == []


async def test_the_server_rejects_temperature_like_api_version_2026_10_21(
    server: MessagesServer,
) -> None:
    async with anthropic.AsyncAnthropic(
        api_key=TEST_KEY, base_url=server.base_url, max_retries=0
    ) as client:
        with pytest.raises(anthropic.BadRequestError, match="temperature"):
            await client.messages.create(
                model=TEST_MODEL,
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"temperature": 1.0},
            )


async def test_temperature_is_sent_when_the_client_pins_the_older_api_version(
    server: MessagesServer,
) -> None:
    server.reply(message(text("ok")))
    async with anthropic.AsyncAnthropic(
        api_key=TEST_KEY,
        base_url=server.base_url,
        default_headers={"anthropic-version": "2023-06-01"},
    ) as client:
        await AnthropicLLM(TEST_MODEL, client=client).complete([user("hi")], temperature=0.25)

    (sent,) = server.requests
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["temperature"] == 0.25


async def test_tool_use_round_trip_sends_tool_results_with_is_error(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    registry = ToolRegistry([add, divide])
    server.reply(
        message(
            text("Let me compute."),
            tool_use("add", {"a": 2, "b": 3}, id="toolu_a"),
            tool_use("divide", {"a": 1, "b": 0}, id="toolu_b"),
            usage=(40, 20),
        ),
        message(text("2+3=5; 1/0 is undefined.")),
    )
    conversation = [user("What are 2+3 and 1/0?")]

    first = await anthropic_llm.complete(conversation, tools=registry.specs)

    assert first.stop_reason == "tool_use"
    assert first.text == "Let me compute."
    assert first.tool_calls == [
        ToolCall(id="toolu_a", name="add", input={"a": 2, "b": 3}),
        ToolCall(id="toolu_b", name="divide", input={"a": 1, "b": 0}),
    ]
    outcomes = await registry.run_calls(first.tool_calls)
    conversation += [first.to_message(), user([o.to_block() for o in outcomes])]
    second = await anthropic_llm.complete(conversation, tools=registry.specs)

    assert second.text == "2+3=5; 1/0 is undefined."
    assert second.stop_reason == "end_turn"
    first_body, second_body = server.bodies
    assert first_body["tools"] == [
        {"name": "add", "description": "Add two integers.", "input_schema": add.input_schema},
        {"name": "divide", "description": "Divide a by b.", "input_schema": divide.input_schema},
    ]
    assert second_body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me compute."},
            {"type": "tool_use", "id": "toolu_a", "name": "add", "input": {"a": 2, "b": 3}},
            {"type": "tool_use", "id": "toolu_b", "name": "divide", "input": {"a": 1, "b": 0}},
        ],
    }
    assert second_body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "5", "is_error": False},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_b",
                "content": "ZeroDivisionError: float division by zero",
                "is_error": True,
            },
        ],
    }


@pytest.mark.parametrize(
    ("stop_reason", "blocks"),
    [
        ("end_turn", [text("done")]),
        ("max_tokens", [text("truncated")]),
        ("stop_sequence", [text("stopped")]),
        ("tool_use", [tool_use("add", {"a": 1, "b": 2})]),
        ("refusal", [text("I can't help with that.")]),
        ("pause_turn", [text("pausing")]),
    ],
)
async def test_stop_reasons_and_usage_are_mapped(
    server: MessagesServer, anthropic_llm: AnthropicLLM, stop_reason: str, blocks: list[dict]
) -> None:
    server.reply(message(*blocks, stop_reason=stop_reason, usage=(123, 45)))

    response = await anthropic_llm.complete([user("go")], tools=[add.spec])

    assert response.stop_reason == stop_reason
    assert response.usage.counts() == {"input_tokens": 123, "output_tokens": 45}
    assert len(response.content) == 1


@pytest.mark.parametrize("streaming", [False, True])
async def test_overloaded_once_is_retried_by_the_sdk(
    server: MessagesServer, anthropic_llm: AnthropicLLM, streaming: bool
) -> None:
    server.reply(overloaded(), message(text("recovered")))
    tokens: list[str] = []

    response = await anthropic_llm.complete(
        [user("hi")], on_token=tokens.append if streaming else None
    )

    assert response.text == "recovered"
    assert len(server.requests) == 2
    retry_counts = [r.headers.get("x-stainless-retry-count") for r in server.requests]
    assert retry_counts == ["0", "1"]


async def test_retries_exhausted_raise_llm_error_with_status(server: MessagesServer) -> None:
    server.reply(overloaded(), overloaded())

    with pytest.raises(LLMError) as caught:
        async with AnthropicLLM(
            TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, max_retries=1
        ) as llm:
            await llm.complete([user("hi")])

    assert caught.value.status_code == 529
    assert "overloaded" in str(caught.value)
    assert "max_retries" in str(caught.value)
    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)
    assert len(server.requests) == 2


async def test_given_client_gets_our_retry_and_timeout_settings(server: MessagesServer) -> None:
    server.reply(overloaded())
    async with anthropic.AsyncAnthropic(
        api_key=TEST_KEY, base_url=server.base_url, max_retries=5
    ) as client:
        llm = AnthropicLLM(TEST_MODEL, client=client, max_retries=0, timeout=7.5)
        assert llm.client.max_retries == 0
        assert llm.client.timeout == 7.5
        with pytest.raises(LLMError) as caught:
            await llm.complete([user("hi")])

    assert caught.value.status_code == 529
    assert len(server.requests) == 1


async def test_client_and_api_key_together_are_refused(server: MessagesServer) -> None:
    async with anthropic.AsyncAnthropic(api_key=TEST_KEY, base_url=server.base_url) as client:
        with pytest.raises(LLMConfigError, match="one or the other"):
            AnthropicLLM(client=client, api_key="other")


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (malformed(), "`content` should be a list"),
        (malformed(b"{not json"), "not valid JSON"),
        (Reply(raw=b"<html>gateway</html>", content_type="text/html"), "got text"),
        (malformed(b'{"type": "message", "content": [{"type": "text"}]}'), "TextBlock"),
        (malformed(b'{"type": "message", "content": []}'), "`usage` is missing"),
        (
            Reply(raw=b'event: content_block_stop\ndata: {"type": "content_block_stop", '
                  b'"index": 0}\n\n', content_type="text/event-stream"),
            "",
        ),
    ],
    ids=["content-not-list", "invalid-json", "html", "text-block-without-text", "no-usage",
         "sse-out-of-order"],
)  # fmt: skip
async def test_malformed_response_raises_llm_error(
    server: MessagesServer, anthropic_llm: AnthropicLLM, reply: Reply, detail: str
) -> None:
    server.reply(reply)
    stream = reply.content_type == "text/event-stream"

    with pytest.raises(LLMError, match="malformed response") as caught:
        await anthropic_llm.complete([user("hi")], on_token=(lambda _: None) if stream else None)

    assert detail in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_server_side_validation_error_is_wrapped(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    # A conversation that starts with the model cannot be cleaned; the server refuses it.
    with pytest.raises(LLMError) as caught:
        await anthropic_llm.complete([assistant("I start"), user("and now?")])

    assert caught.value.status_code == 400
    message_text = str(caught.value)
    assert "first message must use the" in message_text
    assert isinstance(caught.value.__cause__, anthropic.BadRequestError)


async def test_non_alternating_roles_are_merged_before_sending(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(text("ok")))
    await anthropic_llm.complete([user("one"), user("two")])
    assert server.bodies[0]["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        }
    ]


async def test_auth_error_names_the_key_variable(server: MessagesServer) -> None:
    server.reply(error(401, "authentication_error", "invalid x-api-key"))

    with pytest.raises(LLMError, match="ANTHROPIC_API_KEY") as caught:
        async with AnthropicLLM(TEST_MODEL, api_key="bad-key", base_url=server.base_url) as llm:
            await llm.complete([user("hi")])
    assert caught.value.status_code == 401


async def test_timeout_is_passed_to_the_sdk(server: MessagesServer) -> None:
    server.reply(message(text("too late"), delay=1.5))
    started = time.monotonic()

    with pytest.raises(LLMError, match=r"did not answer within 0.3s") as caught:
        async with AnthropicLLM(
            TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, max_retries=0, timeout=0.3
        ) as llm:
            await llm.complete([user("hi")])

    assert time.monotonic() - started < 1.2
    assert isinstance(caught.value.__cause__, anthropic.APITimeoutError)
    assert caught.value.status_code is None


async def test_connection_error_is_wrapped() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LLMError, match="could not connect") as caught:
        async with AnthropicLLM(
            TEST_MODEL, api_key=TEST_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0
        ) as llm:
            await llm.complete([user("hi")])
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert isinstance(caught.value.__cause__, anthropic.APIConnectionError)


def test_missing_api_key_explains_env_var_and_offline_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    with pytest.raises(LLMConfigError) as caught:
        AnthropicLLM()

    text_ = str(caught.value)
    assert "ANTHROPIC_API_KEY" in text_
    assert "ScriptedLLM" in text_
    assert "--llm scripted:FILE" in text_


async def test_api_key_is_read_from_the_environment(
    server: MessagesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    server.reply(message(text("ok")))

    async with AnthropicLLM(TEST_MODEL, base_url=server.base_url) as llm:
        await llm.complete([user("hi")])

    assert api_key_of(server.requests[0].headers) == "env-key"


async def test_streaming_surfaces_text_deltas(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(
        message(
            text("Hello streamed world"),
            tool_use("add", {"a": 1, "b": 2}, id="toolu_s"),
            usage=(9, 8),
        )
    )
    tokens: list[str] = []

    response = await anthropic_llm.complete([user("hi")], tools=[add.spec], on_token=tokens.append)

    assert tokens == ["Hello ", "streamed ", "world"]
    assert "".join(tokens) == response.text == "Hello streamed world"
    assert response.tool_calls == [ToolCall(id="toolu_s", name="add", input={"a": 1, "b": 2})]
    assert response.stop_reason == "tool_use"
    assert response.usage.counts() == {"input_tokens": 9, "output_tokens": 8}
    assert server.bodies[0]["stream"] is True


async def test_streaming_callback_errors_propagate_unwrapped(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(text("one two")))

    def explode(_: str) -> None:
        raise KeyError("callback bug")

    with pytest.raises(KeyError, match="callback bug"):
        await anthropic_llm.complete([user("hi")], on_token=explode)


async def test_tool_result_helper_and_string_content(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(text("fine")))
    conversation = [
        user("weather?"),
        assistant([ToolCall(id="toolu_w", name="weather", input={}).to_block()]),
        user([tool_result("toolu_w", "sunny"), *user("thanks").blocks]),
    ]
    spec = ToolSpec(name="weather", input_schema={"type": "object", "properties": {}})

    await anthropic_llm.complete(conversation, tools=[spec])

    body = server.bodies[0]
    assert body["tools"] == [{"name": "weather", "input_schema": spec.input_schema}]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_w", "content": "sunny", "is_error": False},
        {"type": "text", "text": "thanks"},
    ]


def test_anthropic_llm_implements_the_protocol(server: MessagesServer) -> None:
    llm = AnthropicLLM(TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url)
    assert isinstance(llm, LLM)
    assert "claude-test" in repr(llm)


async def test_error_event_mid_stream_is_wrapped(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    start = {
        "type": "message_start",
        "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": TEST_MODEL,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 1, "output_tokens": 1}},
    }  # fmt: skip
    failure = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    raw = f"event: message_start\ndata: {json.dumps(start)}\n\n"
    raw += f"event: error\ndata: {json.dumps(failure)}\n\n"
    server.reply(Reply(raw=raw.encode(), content_type="text/event-stream"))

    with pytest.raises(LLMError, match="failed midway with overloaded_error") as caught:
        await anthropic_llm.complete([user("hi")], on_token=lambda _: None)

    assert caught.value.status_code == 529
    assert "retry the call" in str(caught.value)
    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)
