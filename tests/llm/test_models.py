"""Message and response models: JSON round-trips, derived views, helpers, public surface."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

import flowstate.llm
from flowstate.llm import (
    ContentBlock,
    LLMRequest,
    LLMResponse,
    Message,
    TextBlock,
    ToolCall,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Usage,
    assistant,
    tool_result,
    user,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
ids = st.text(min_size=1, max_size=20)
text_blocks = st.builds(TextBlock, text=st.text())
tool_use_blocks = st.builds(ToolUseBlock, id=ids, name=ids, input=json_objects)
tool_result_blocks = st.builds(
    ToolResultBlock, tool_use_id=ids, content=st.text(), is_error=st.booleans()
)
messages = st.builds(
    Message,
    role=st.sampled_from(["user", "assistant"]),
    content=st.text() | st.lists(text_blocks | tool_use_blocks | tool_result_blocks, max_size=5),
)
usages = st.builds(Usage, input_tokens=st.integers(0, 10**7), output_tokens=st.integers(0, 10**7))
stop_reasons = st.none() | st.sampled_from(["end_turn", "tool_use", "max_tokens", "refusal"])


@st.composite
def responses(draw: st.DrawFn) -> LLMResponse:
    common: dict[str, Any] = {
        "stop_reason": draw(stop_reasons),
        "usage": draw(usages),
        "model": draw(st.none() | st.text(max_size=30)),
    }
    if draw(st.booleans()):
        content = draw(st.lists(text_blocks | tool_use_blocks, max_size=5))
        return LLMResponse(content=content, **common)
    calls = draw(st.lists(st.builds(ToolCall, id=ids, name=ids, input=json_objects), max_size=3))
    return LLMResponse(text=draw(st.text()), tool_calls=calls, **common)


@given(messages)
def test_message_json_round_trip(message: Message) -> None:
    assert Message.model_validate_json(message.model_dump_json()) == message


@given(responses())
def test_response_json_round_trip(response: LLMResponse) -> None:
    restored = LLMResponse.model_validate_json(response.model_dump_json())
    assert restored == response
    assert restored.to_message() == response.to_message()


@given(st.lists(messages, max_size=4), st.none() | st.text())
def test_request_json_round_trip(conversation: list[Message], system: str | None) -> None:
    spec = ToolSpec(name="t", description="d", input_schema={"type": "object"})
    request = LLMRequest(messages=conversation, system=system, tools=[spec], temperature=0.5)
    assert LLMRequest.model_validate_json(request.model_dump_json()) == request


@given(responses())
def test_response_views_agree_with_content(response: LLMResponse) -> None:
    assert response.text == "".join(b.text for b in response.content if isinstance(b, TextBlock))
    assert [c.to_block() for c in response.tool_calls] == [
        b for b in response.content if isinstance(b, ToolUseBlock)
    ]


def test_content_blocks_are_discriminated_on_type() -> None:
    adapter: TypeAdapter[ContentBlock] = TypeAdapter(ContentBlock)
    assert isinstance(adapter.validate_python({"type": "text", "text": "x"}), TextBlock)
    block = adapter.validate_python({"type": "tool_result", "tool_use_id": "t", "content": "c"})
    assert block == ToolResultBlock(tool_use_id="t", content="c", is_error=False)
    with pytest.raises(ValidationError, match="image"):
        adapter.validate_python({"type": "image", "source": {}})


def test_response_from_text_and_calls_builds_content() -> None:
    call = ToolCall(id="toolu_1", name="search", input={"q": "x"})
    response = LLMResponse(text="Searching.", tool_calls=[call], stop_reason="tool_use")

    assert response.content == [TextBlock(text="Searching."), call.to_block()]
    assert response.to_message() == Message(role="assistant", content=response.content)


def test_response_from_content_derives_text_and_calls() -> None:
    response = LLMResponse(
        content=[
            TextBlock(text="a"),
            ToolUseBlock(id="1", name="n", input={}),
            TextBlock(text="b"),
        ]
    )
    assert response.text == "ab"
    assert response.tool_calls == [ToolCall(id="1", name="n", input={})]


def test_inconsistent_response_is_refused() -> None:
    with pytest.raises(ValidationError, match="disagree"):
        LLMResponse(text="x", content=[TextBlock(text="y")])
    with pytest.raises(ValidationError, match="tool results belong in a user message"):
        LLMResponse(content=[ToolResultBlock(tool_use_id="t", content="c")])


def test_to_message_is_a_copy() -> None:
    response = LLMResponse(tool_calls=[ToolCall(id="1", name="n", input={"k": [1]})])
    message = response.to_message()
    block = message.blocks[0]
    assert isinstance(block, ToolUseBlock)
    block.input["k"].append(2)
    assert response.tool_calls[0].input == {"k": [1]}


def test_helpers() -> None:
    assert user("hi") == Message(role="user", content="hi")
    assert assistant("yo").role == "assistant"
    result = tool_result("toolu_1", "boom", is_error=True)
    message = user([result, TextBlock(text="and also")])
    assert message.content == [result, TextBlock(text="and also")]
    assert message.text == "and also"
    assert user("plain").blocks == [TextBlock(text="plain")]


def test_last_user_text_summarises_tool_results() -> None:
    request = LLMRequest(
        messages=[
            user("first"),
            assistant([ToolUseBlock(id="t1", name="n", input={})]),
            user([tool_result("t1", "failed", is_error=True)]),
        ]
    )
    assert request.last_user_text == "[tool_result for t1 (error): failed]"
    assert LLMRequest(messages=[]).last_user_text == ""


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="colour"):
        Message.model_validate({"role": "user", "content": "x", "colour": "red"})
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "system", "content": "x"})


PUBLIC = {
    "EffectContext",
    "JournaledLLM",
    "JournaledTools",
    "AnthropicLLM",
    "ContentBlock",
    "DEFAULT_ANTHROPIC_MODEL",
    "LLM",
    "LLMConfigError",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "Limiter",
    "RateLimitedLLM",
    "Message",
    "Role",
    "SCRIPTED_TOOL_ID_PREFIX",
    "ScriptExhausted",
    "ScriptFunction",
    "ScriptItem",
    "ScriptedLLM",
    "TextBlock",
    "TokenCallback",
    "Tool",
    "ToolCall",
    "ToolInputError",
    "ToolOutcome",
    "ToolRegistry",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "Usage",
    "assistant",
    "conversation_problems",
    "llm_from_spec",
    "tool",
    "tool_result",
    "user",
    # issue 18: clean conversations, tool_choice, caching, thinking, prices
    "CacheMode",
    "DEFAULT_PRICES",
    "ModelPrice",
    "NO_RESULT",
    "RedactedThinkingBlock",
    "ThinkingBlock",
    "ToolChoice",
    "clean_conversation",
    "price_of",
    "split_usage",
    "thinking_of",
    "usage_cost",
}


def test_public_surface_is_pinned() -> None:
    exported = set(flowstate.llm.__all__)
    visible = {n for n in dir(flowstate.llm) if not n.startswith("_")}
    assert exported == PUBLIC
    assert visible == PUBLIC
    assert len(flowstate.llm.__all__) == len(exported)


def test_public_classes_report_the_public_module() -> None:
    for name in ("Message", "AnthropicLLM", "ScriptedLLM", "Tool", "LLMError"):
        assert getattr(flowstate.llm, name).__module__ == "flowstate.llm"


def test_llm_package_imports_no_other_flowstate_package() -> None:
    import ast
    from pathlib import Path

    allowed = {"flowstate.errors"}
    for path in Path(flowstate.llm.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                name = node.module
            elif isinstance(node, ast.Import):
                name = node.names[0].name
            else:
                continue
            assert not name.startswith("flowstate") or name in allowed, f"{path.name}: {name}"
