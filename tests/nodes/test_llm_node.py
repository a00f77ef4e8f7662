"""`llm_node`: prompts, text and structured output, its declared writes, and its errors."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field
from typing_extensions import is_typeddict

from flowstate import END, START, GraphBuilder, GraphBuildError, NodeFailed, append
from flowstate.llm import (
    AnthropicLLM,
    LLMConfigError,
    Message,
    ScriptedLLM,
    TextBlock,
    assistant,
    tool,
    user,
)
from flowstate.nodes import LLMOutputError, llm_node, messages_reducer, run_usage, tool_node
from tests.llm.messages_server import MessagesServer, message, text, tool_use


class Verdict(BaseModel):
    """The classification of a message."""

    label: Literal["spam", "ham"]
    confidence: float = Field(ge=0, le=1)


class Doc(BaseModel):
    title: str
    body: str


class State(BaseModel):
    question: str = ""
    doc: Doc = Doc(title="t", body="b")
    answer: str = ""
    verdict: Verdict | None = None
    messages: Annotated[list[Message], messages_reducer] = []


def one_node_app(node, name: str = "ask", state: type[BaseModel] = State):  # type: ignore[no-untyped-def]
    g = GraphBuilder(state)
    g.add_node(name, node)
    g.add_edge(START, name)
    g.add_edge(name, END)
    return g.compile(store=":memory:")


# -- prompts and text output ---------------------------------------------------------------


def test_template_prompt_is_formatted_with_state_fields_and_text_goes_to_output_field() -> None:
    llm = ScriptedLLM([{"text": "Paris.", "usage": {"input_tokens": 9, "output_tokens": 2}}])
    app = one_node_app(
        llm_node(llm, prompt="Q: {question} (doc {doc.title})", output_field="answer")
    )

    result = app.run_sync({"question": "Capital of France?", "doc": {"title": "geo", "body": ""}})

    assert result.state.answer == "Paris."
    assert llm.requests[0].messages == [user("Q: Capital of France? (doc geo)")]
    assert result.state.messages == []  # no messages_field: the conversation is not kept
    assert run_usage(app.store, result.run_id) == {"input_tokens": 9, "output_tokens": 2}


def test_output_may_name_the_text_field() -> None:
    app = one_node_app(llm_node(ScriptedLLM(["42"]), prompt="{question}", output="answer"))
    assert app.run_sync({"question": "6*7?"}).state.answer == "42"


def test_prompt_function_may_return_messages() -> None:
    llm = ScriptedLLM(["B"])

    def prompt(s: State) -> list[Message]:
        return [user(f"Pick: {s.question}"), assistant("Thinking."), user("Answer with a letter.")]

    app = one_node_app(llm_node(llm, prompt=prompt, system="Be terse.", output_field="answer"))

    assert app.run_sync({"question": "A or B"}).state.answer == "B"
    assert [m.role for m in llm.requests[0].messages] == ["user", "assistant", "user"]
    assert llm.requests[0].system == "Be terse."


def test_a_template_naming_a_missing_field_is_a_clear_error() -> None:
    app = one_node_app(
        llm_node(ScriptedLLM(["x"]), prompt="{question} {topic} {lang}", output_field="answer"),
        name="writer",
    )

    with pytest.raises(NodeFailed) as info:
        app.run_sync({"question": "q"})

    message_ = str(info.value.__cause__)
    assert "llm node 'writer'" in message_
    assert "{lang}, {topic}" in message_ and "State has no field 'lang', 'topic'" in message_
    assert "fields: question, doc, answer" in message_


def test_messages_field_keeps_the_conversation() -> None:
    llm = ScriptedLLM(["Hi!", "Bye!"])
    g = GraphBuilder(State)
    g.add_node("hello", llm_node(llm, prompt="Say hi to {question}", messages_field="messages"))
    g.add_node("bye", llm_node(llm, prompt="Now say bye", messages_field="messages"))
    g.add_edge(START, "hello")
    g.add_edge("hello", "bye")
    g.add_edge("bye", END)

    result = g.compile(store=":memory:").run_sync({"question": "Ada"})

    assert [(m.role, m.text) for m in result.state.messages] == [
        ("user", "Say hi to Ada"),
        ("assistant", "Hi!"),
        ("user", "Now say bye"),
        ("assistant", "Bye!"),
    ]
    assert len(llm.requests[1].messages) == 3


def test_a_conversation_ending_with_a_user_turn_is_answered_without_the_prompt() -> None:
    llm = ScriptedLLM(["Hello Ada."])
    app = one_node_app(llm_node(llm, messages_field="messages"))

    result = app.run_sync({"messages": [user("Hi, I am Ada.")]})

    assert [m.text for m in result.state.messages] == ["Hi, I am Ada.", "Hello Ada."]


# -- structured output ------------------------------------------------------------------


def test_structured_output_through_a_forced_tool() -> None:
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "Verdict", "input": {"label": "spam", "confidence": 0.9}}]}]
    )
    app = one_node_app(
        llm_node(
            llm,
            prompt="Classify: {question}",
            system="You triage mail.",
            output=Verdict,
            output_field="verdict",
            messages_field="messages",
        ),
        name="classify",
    )

    result = app.run_sync({"question": "WIN A PRIZE"})

    assert result.state.verdict == Verdict(label="spam", confidence=0.9)
    request = llm.requests[0]
    assert [t.name for t in request.tools] == ["Verdict"]
    assert request.tools[0].input_schema == Verdict.model_json_schema()
    assert request.tools[0].description == "The classification of a message."
    assert request.system is not None and request.system.startswith("You triage mail.\n\n")
    assert "calling the `Verdict` tool" in request.system
    # the stored transcript stays valid: the output call is kept as its JSON text
    stored = result.state.messages[-1]
    assert stored.role == "assistant"
    assert stored.content == [TextBlock(text='{"label": "spam", "confidence": 0.9}')]


def test_an_answer_without_the_output_tool_call_names_the_node() -> None:
    llm = ScriptedLLM(["I think it is spam."])
    app = one_node_app(
        llm_node(
            llm,
            prompt="Classify: {question}",
            output=Verdict,
            output_field="verdict",
            output_retries=0,
        ),
        name="classify",
    )

    with pytest.raises(NodeFailed) as info:
        app.run_sync({"question": "WIN A PRIZE"})

    cause = info.value.__cause__
    assert isinstance(cause, LLMOutputError)
    assert cause.node == "classify"
    assert "llm node 'classify'" in str(cause)
    assert "no call of that tool" in str(cause) and "'Verdict'" in str(cause)
    assert "I think it is spam." in str(cause)
    assert info.value.node == "classify"


def test_a_missing_output_call_is_asked_again_with_a_correction() -> None:
    llm = ScriptedLLM(
        [
            {"text": "It is spam.", "usage": {"input_tokens": 10, "output_tokens": 3}},
            {
                "tool_calls": [{"name": "Verdict", "input": {"label": "spam", "confidence": 2}}],
                "usage": {"input_tokens": 20, "output_tokens": 5},
            },
            {
                "tool_calls": [{"name": "Verdict", "input": {"label": "spam", "confidence": 1}}],
                "usage": {"input_tokens": 30, "output_tokens": 5},
            },
        ]
    )
    app = one_node_app(
        llm_node(
            llm,
            prompt="Classify: {question}",
            output=Verdict,
            output_field="verdict",
            output_retries=2,
        )
    )

    result = app.run_sync({"question": "WIN"})

    assert result.state.verdict == Verdict(label="spam", confidence=1)
    second, third = llm.requests[1], llm.requests[2]
    assert "no call of that tool" in second.messages[-1].text
    correction = third.messages[-1].blocks[0]
    assert correction.type == "tool_result" and correction.is_error
    assert "confidence" in correction.content
    assert run_usage(app.store, result.run_id) == {"input_tokens": 60, "output_tokens": 13}


def test_structured_input_that_does_not_fit_the_model_is_an_error() -> None:
    llm = ScriptedLLM([{"tool_calls": [{"name": "Verdict", "input": {"label": "eggs"}}]}])
    app = one_node_app(
        llm_node(
            llm, prompt="{question}", output=Verdict, output_field="verdict", output_retries=0
        ),
        name="classify",
    )
    with pytest.raises(NodeFailed) as info:
        app.run_sync({"question": "x"})
    assert isinstance(info.value.__cause__, LLMOutputError)
    assert "does not fit Verdict" in str(info.value.__cause__)
    assert "label" in str(info.value.__cause__) and "confidence" in str(info.value.__cause__)


def test_structured_output_after_a_tool_loop() -> None:
    @tool
    def lookup(sender: str) -> str:
        """Reputation of a sender."""
        return "known spammer"

    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "lookup", "input": {"sender": "x@y.z"}}]},
            {"tool_calls": [{"name": "Verdict", "input": {"label": "spam", "confidence": 1}}]},
        ]
    )
    g = GraphBuilder(State)
    g.add_node(
        "classify",
        llm_node(
            llm,
            prompt="Classify mail from x@y.z: {question}",
            output=Verdict,
            output_field="verdict",
            messages_field="messages",
            tools=[lookup],
        ),
    )
    g.add_node("tools", tool_node([lookup]))
    g.add_edge(START, "classify")
    g.add_conditional_edges(
        "classify", lambda s: "tools" if s.verdict is None else END, targets=["tools", END]
    )
    g.add_edge("tools", "classify")

    result = g.compile(store=":memory:").run_sync({"question": "WIN"})

    assert result.state.verdict == Verdict(label="spam", confidence=1)
    assert [t.name for t in llm.requests[0].tools] == ["lookup", "Verdict"]
    assert [m.role for m in result.state.messages] == ["user", "assistant", "user", "assistant"]


def test_calling_an_unoffered_tool_instead_of_the_output_tool_is_an_error() -> None:
    llm = ScriptedLLM([{"tool_calls": [{"name": "search", "input": {}}]}])
    app = one_node_app(
        llm_node(
            llm, prompt="{question}", output=Verdict, output_field="verdict", output_retries=0
        ),
        name="classify",
    )
    with pytest.raises(NodeFailed) as info:
        app.run_sync({"question": "x"})
    assert "the answer calls ['search'] but not that tool" in str(info.value.__cause__)


@pytest.mark.anyio
async def test_structured_output_with_anthropic_llm(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(tool_use("Verdict", {"label": "ham", "confidence": 0.75})))
    app = one_node_app(
        llm_node(
            anthropic_llm, prompt="Classify: {question}", output=Verdict, output_field="verdict"
        )
    )

    result = await app.run({"question": "Lunch at noon?"})

    assert result.state.verdict == Verdict(label="ham", confidence=0.75)
    body = server.bodies[0]
    assert body["tools"] == [
        {
            "name": "Verdict",
            "description": "The classification of a message.",
            "input_schema": Verdict.model_json_schema(),
        }
    ]
    assert "Verdict" in body["system"]


@pytest.mark.anyio
async def test_missing_tool_call_with_anthropic_llm(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(text("ham, probably")), message(text("still ham")))
    app = one_node_app(
        llm_node(anthropic_llm, prompt="{question}", output=Verdict, output_field="verdict"),
        name="classify",
    )
    with pytest.raises(NodeFailed) as info:
        await app.run({"question": "Lunch?"})
    assert isinstance(info.value.__cause__, LLMOutputError)
    assert "after 2 answers" in str(info.value.__cause__)
    assert len(server.requests) == 2  # one answer, one correction (output_retries=1)


# -- declared writes and build-time checks -------------------------------------------------


def test_node_declares_ctx_and_a_typeddict_of_its_writes() -> None:
    node = llm_node(
        ScriptedLLM([]),
        prompt="{question}",
        output=Verdict,
        output_field="verdict",
        messages_field="messages",
        name="classify",
    )
    assert node.__name__ == "classify"
    hints = typing.get_type_hints(node)
    writes = hints["return"]
    assert is_typeddict(writes)
    assert typing.get_type_hints(writes) == {"verdict": Verdict, "messages": list[Message]}

    g = GraphBuilder(State)
    g.add_node(node)  # named after name=
    g.add_node(tool_node([], name="run_tools"))
    g.add_edge(START, "classify")
    g.add_edge("classify", "run_tools")
    g.add_edge("run_tools", END)
    ir = g.build()
    assert ir.nodes["classify"].ctx_param == "ctx"
    assert ir.nodes["classify"].writes == {"verdict", "messages"}
    assert ir.nodes["run_tools"].writes == {"messages"}


def test_a_misspelt_output_field_fails_the_build() -> None:
    g = GraphBuilder(State, name="typo")
    g.add_node("ask", llm_node(ScriptedLLM([]), prompt="{question}", output_field="answr"))
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    with pytest.raises(GraphBuildError) as info:
        g.compile(store=":memory:")
    assert "node 'ask' declares it writes 'answr'" in str(info.value)
    assert "did you mean 'answer'" in str(info.value)


def test_a_wrongly_typed_output_field_fails_the_build() -> None:
    g = GraphBuilder(State)
    g.add_node(
        "ask", llm_node(ScriptedLLM([]), prompt="{question}", output=Verdict, output_field="answer")
    )
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    with pytest.raises(GraphBuildError) as info:
        g.compile(store=":memory:")
    assert "writes 'answer' as" in str(info.value) and "Verdict" in str(info.value)


def test_a_messages_field_without_a_reducer_is_refused() -> None:
    class Plain(BaseModel):
        question: str = ""
        messages: list[Message] = []

    app = one_node_app(
        llm_node(ScriptedLLM(["x"]), prompt="{question}", messages_field="messages"),
        state=Plain,
    )
    with pytest.raises(NodeFailed) as info:
        app.run_sync({"question": "q"})
    assert "Plain.messages, which has no reducer" in str(info.value.__cause__)
    assert "messages_reducer" in str(info.value.__cause__)


def test_the_builtin_append_reducer_works_too() -> None:
    class Appending(BaseModel):
        question: str = ""
        messages: Annotated[list[Message], append] = []

    app = one_node_app(
        llm_node(ScriptedLLM(["x"]), prompt="{question}", messages_field="messages"),
        state=Appending,
    )
    assert [m.text for m in app.run_sync({"question": "q"}).state.messages] == ["q", "x"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"prompt": "x"}, "would write nothing"),
        ({"output": Verdict}, "no field to write it to"),
        ({"output_field": "answer"}, "no prompt and no messages_field"),
        ({"prompt": "x", "output_field": "answer", "tools": []}, None),
        ({"prompt": "x", "output_field": "answer", "output": "other"}, "pass only one"),
        ({"prompt": "x", "output": 3}, "pass a pydantic model class"),
    ],
)
def test_setup_mistakes_are_refused_when_the_node_is_built(kwargs, expected) -> None:  # type: ignore[no-untyped-def]
    if expected is None:
        llm_node(ScriptedLLM([]), **kwargs)
        return
    with pytest.raises(LLMConfigError, match=expected):
        llm_node(ScriptedLLM([]), **kwargs)


def test_tools_need_a_messages_field() -> None:
    @tool
    def noop() -> str:
        """Do nothing."""
        return ""

    with pytest.raises(LLMConfigError, match="messages_field='messages'"):
        llm_node(ScriptedLLM([]), prompt="x", output_field="answer", tools=[noop])
    with pytest.raises(LLMConfigError, match="rename the tool or the model class"):
        llm_node(
            ScriptedLLM([]),
            prompt="x",
            output=Verdict,
            output_field="verdict",
            messages_field="messages",
            tools=[tool(noop.fn, name="Verdict")],
        )
