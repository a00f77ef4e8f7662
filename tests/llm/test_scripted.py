"""ScriptedLLM and llm_from_spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowstate.llm import (
    LLM,
    AnthropicLLM,
    LLMConfigError,
    LLMError,
    LLMRequest,
    LLMResponse,
    ScriptedLLM,
    ScriptExhausted,
    ToolCall,
    ToolRegistry,
    Usage,
    assistant,
    conversation_problems,
    llm_from_spec,
    tool,
    user,
)

pytestmark = pytest.mark.anyio


@tool
def lookup(city: str) -> str:
    """Look up the weather for a city."""
    return f"sunny in {city}"


async def test_list_script_plays_strings_dicts_and_responses_in_order() -> None:
    llm = ScriptedLLM(
        [
            {"text": "Checking.", "tool_calls": [{"name": "lookup", "input": {"city": "Oslo"}}]},
            "It is sunny in Oslo.",
            LLMResponse(text="Bye.", stop_reason="end_turn", usage=Usage(input_tokens=3)),
        ]
    )
    registry = ToolRegistry([lookup])
    conversation = [user("Weather in Oslo?")]

    first = await llm.complete(conversation, tools=registry.specs, system="Be brief.")
    outcomes = await registry.run_calls(first.tool_calls)
    conversation += [first.to_message(), user([o.to_block() for o in outcomes])]
    second = await llm.complete(conversation, tools=registry.specs)
    conversation += [second.to_message(), user("thanks")]
    third = await llm.complete(conversation, max_tokens=50)

    assert first.text == "Checking."
    assert first.tool_calls == [
        ToolCall(id="toolu_scripted_1", name="lookup", input={"city": "Oslo"})
    ]
    assert first.stop_reason == "tool_use"
    assert first.model == "scripted"
    assert outcomes[0].content == "sunny in Oslo"
    assert (second.text, second.stop_reason, second.tool_calls) == (
        "It is sunny in Oslo.",
        "end_turn",
        [],
    )
    assert third.text == "Bye."
    assert third.usage.input_tokens == 3
    assert llm.remaining == 0
    assert [len(r.messages) for r in llm.requests] == [1, 3, 5]
    assert llm.requests[0].system == "Be brief."
    assert llm.requests[0].tools == registry.specs
    assert llm.requests[2].max_tokens == 50
    assert llm.requests[1].messages[2].blocks[0].model_dump() == {
        "type": "tool_result",
        "tool_use_id": "toolu_scripted_1",
        "content": "sunny in Oslo",
        "is_error": False,
    }


async def test_recorded_requests_are_copies() -> None:
    llm = ScriptedLLM(["ok"])
    conversation = [user("hi")]

    await llm.complete(conversation)
    conversation.append(assistant("mutated later"))

    assert len(llm.requests[0].messages) == 1


async def test_function_script_sees_the_request() -> None:
    def answer(request: LLMRequest) -> str | dict:
        if request.tools and not any(m.role == "assistant" for m in request.messages):
            return {"tool_calls": [{"name": "lookup", "input": {"city": request.last_user_text}}]}
        return f"echo: {request.last_user_text}"

    llm = ScriptedLLM(answer)

    first = await llm.complete([user("Paris")], tools=[lookup.spec])
    second = await llm.complete([user("again")])

    assert first.tool_calls == [
        ToolCall(id="toolu_scripted_1", name="lookup", input={"city": "Paris"})
    ]
    assert second.text == "echo: again"
    assert llm.scripted is None and llm.remaining is None


async def test_async_function_script() -> None:
    async def answer(request: LLMRequest) -> LLMResponse:
        return LLMResponse(text=request.last_user_text.upper())

    response = await ScriptedLLM(answer).complete([user("loud")])

    assert response.text == "LOUD"
    assert response.model == "scripted"


async def test_exhaustion_names_the_count_and_last_user_message() -> None:
    llm = ScriptedLLM(["one", "two"])
    await llm.complete([user("first")])
    await llm.complete([user("first"), assistant("one"), user("second")])

    with pytest.raises(ScriptExhausted) as caught:
        await llm.complete([user("first"), assistant("one"), user("What is the capital of Peru?")])

    message = str(caught.value)
    assert "2 were scripted" in message
    assert "request 3" in message
    assert "What is the capital of Peru?" in message
    assert isinstance(caught.value, LLMError)
    assert len(llm.requests) == 3


async def test_same_script_same_requests_same_responses() -> None:
    script = [
        {
            "tool_calls": [
                {"name": "lookup", "input": {"city": "A"}},
                {"name": "lookup", "input": {"city": "B"}},
            ]
        },
        {"tool_calls": [{"name": "lookup", "input": {"city": "C"}, "id": "toolu_fixed"}]},
        {"tool_calls": [{"name": "lookup", "input": {"city": "D"}}]},
    ]

    async def run() -> list[str]:
        llm = ScriptedLLM(script)
        registry = ToolRegistry([lookup])
        conversation = [user("go")]
        dumps = []
        for _ in script:
            response = await llm.complete(conversation, tools=registry.specs)
            dumps.append(response.model_dump_json())
            outcomes = await registry.run_calls(response.tool_calls)
            conversation += [response.to_message(), user([o.to_block() for o in outcomes])]
        return dumps

    first, second = await run(), await run()

    assert first == second
    ids = [[c["id"] for c in json.loads(d)["tool_calls"]] for d in first]
    assert ids == [["toolu_scripted_1", "toolu_scripted_2"], ["toolu_fixed"], ["toolu_scripted_3"]]


async def test_on_token_streams_the_scripted_text() -> None:
    tokens: list[str] = []

    response = await ScriptedLLM(["Hello  there, world!"]).complete(
        [user("hi")], on_token=tokens.append
    )

    assert len(tokens) == 3
    assert "".join(tokens) == response.text == "Hello  there, world!"


async def test_rejects_conversations_the_real_api_would_reject() -> None:
    llm = ScriptedLLM(["never"])
    orphan = assistant([ToolCall(id="toolu_9", name="lookup", input={}).to_block()])

    raw = [assistant("hello"), assistant(""), orphan, user("next")]
    problems = " ".join(conversation_problems(raw))
    assert "first message must be a user one" in problems
    assert "roles must alternate" in problems
    assert "toolu_9" in problems
    assert "messages[1] is empty" in problems

    with pytest.raises(LLMError) as caught:
        await llm.complete(raw)

    # What cleaning can fix is fixed (as AnthropicLLM does before sending); the rest is a 400.
    message = str(caught.value)
    assert caught.value.status_code == 400
    assert "first message must be a user one" in message
    assert "roles must alternate" not in message
    assert "toolu_9" not in message


async def test_conversation_check_can_be_turned_off() -> None:
    llm = ScriptedLLM(["fine"], check_conversation=False)
    response = await llm.complete([user("a"), user("b")])
    assert response.text == "fine"


@pytest.mark.parametrize(
    ("script", "needle"),
    [
        ("just a string", "wrap it in a list"),
        ([{"txt": "typo"}], "script item 0 is invalid: txt"),
        (["ok", 42], "script item 1 is a int"),
        ([{"tool_calls": [{"input": {}}]}], "tool_calls.0.name"),
    ],
)
def test_bad_scripts_fail_at_construction(script: object, needle: str) -> None:
    with pytest.raises(LLMConfigError) as caught:
        ScriptedLLM(script)  # type: ignore[arg-type]
    assert needle in str(caught.value)


async def test_bad_function_answer_names_the_request() -> None:
    llm = ScriptedLLM(lambda request: 3.5)  # type: ignore[arg-type, return-value]
    with pytest.raises(LLMConfigError, match="answer to request 1 is a float"):
        await llm.complete([user("hi")])


async def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "answers.json"
    path.write_text(
        json.dumps(
            [
                {"text": "Looking.", "tool_calls": [{"name": "lookup", "input": {"city": "Rome"}}]},
                "Sunny in Rome.",
            ]
        )
    )
    llm = ScriptedLLM.from_file(path)

    first = await llm.complete([user("Rome?")])
    result = user(
        [
            (
                await lookup.invoke(first.tool_calls[0].input, tool_use_id="toolu_scripted_1")
            ).to_block()
        ]
    )
    second = await llm.complete([user("Rome?"), first.to_message(), result])

    assert first.tool_calls[0].id == "toolu_scripted_1"
    assert second.text == "Sunny in Rome."
    with pytest.raises(ScriptExhausted, match=r"2 were scripted from .*answers\.json"):
        await llm.complete([user("more?")])


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot read"),
        ("[1, 2", "not valid JSON"),
        ('{"text": "hi"}', "holds a JSON object"),
        ('["ok", {"tool_calls": "x"}]', "script item 1 is invalid"),
    ],
)
def test_from_file_errors_name_the_file(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "script.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(LLMConfigError) as caught:
        ScriptedLLM.from_file(path)

    assert needle in str(caught.value)
    assert "script.json" in str(caught.value)


def test_scripted_llm_implements_the_protocol() -> None:
    assert isinstance(ScriptedLLM([]), LLM)


def test_llm_from_spec_scripted(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('["hi"]')

    llm = llm_from_spec(f"scripted:{path}")

    assert isinstance(llm, ScriptedLLM)
    assert llm.scripted == 1


def test_llm_from_spec_anthropic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")

    named = llm_from_spec("anthropic:claude-opus-4-1")
    default = llm_from_spec("anthropic")

    assert isinstance(named, AnthropicLLM) and named.model == "claude-opus-4-1"
    assert isinstance(default, AnthropicLLM) and default.model == "claude-sonnet-4-5"


def test_llm_from_spec_anthropic_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="ANTHROPIC_API_KEY"):
        llm_from_spec("anthropic:claude-sonnet-4-5")


@pytest.mark.parametrize("spec", ["openai:gpt-5", "", "claude-sonnet-4-5", "scripted:"])
def test_llm_from_spec_rejects_unknown_specs(spec: str) -> None:
    with pytest.raises(LLMConfigError) as caught:
        llm_from_spec(spec)
    assert "scripted:" in str(caught.value)
