"""`react_agent`: native tool use and the text protocol, their failure paths, the step limit,
crash-and-resume at every crash point, offline replay, a subgraph, and the real SDK against
the local Messages API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowstate import END, START, GraphBuilder, NodeFailed
from flowstate.graphs import FinalAnswer, ReActState, ToolAction, react_agent
from flowstate.llm import (
    AnthropicLLM,
    LLMError,
    LLMRequest,
    ScriptedLLM,
    ToolResultBlock,
    assistant,
    conversation_problems,
    user,
)
from flowstate.testing import assert_replays
from tests.llm.messages_server import MessagesServer, message, text, tool_use

from .conftest import RaisingLLM, ToolCalls, make_tools, resumable


def call(name: str, input: dict[str, Any], id: str) -> dict[str, Any]:
    return {"name": name, "input": input, "id": id}


def results_sent(req: LLMRequest) -> list[ToolResultBlock]:
    return [b for b in req.messages[-1].blocks if isinstance(b, ToolResultBlock)]


def population_script(req: LLMRequest) -> Any:
    """Two lookups in one turn, an addition, then the answer (ids fixed: deterministic)."""
    turn = (len(req.messages) + 1) // 2
    if turn == 1:
        return {
            "text": "I will look both cities up.",
            "tool_calls": [
                call("population", {"city": "Lyon"}, "t1"),
                call("population", {"city": "Nantes"}, "t2"),
            ],
        }
    if turn == 2:
        found = [b.content for b in results_sent(req)]
        return {"tool_calls": [call("add", {"a": int(found[0]), "b": int(found[1])}, "t3")]}
    return f"Together they have {results_sent(req)[0].content} inhabitants."


# -- native tool use ---------------------------------------------------------------------------


def test_native_agent_calls_tools_and_answers() -> None:
    calls = ToolCalls()
    llm = ScriptedLLM(population_script)
    app = react_agent(llm, make_tools(calls), system="Be exact.").compile(store=":memory:")

    result = app.run_sync({"task": "How many people live in Lyon and Nantes?"})

    state = result.state
    assert (state.status, state.answer) == ("answered", "Together they have 845454 inhabitants.")
    assert state.turns == 3 and state.pending == [] and state.error is None
    assert [(s.action.tool, s.observation.content) for s in state.steps[:3]] == [  # type: ignore[union-attr]
        ("population", "522250"),
        ("population", "323204"),
        ("add", "845454"),
    ]
    assert state.steps[0].thought == "I will look both cities up."
    assert state.steps[-1].action == FinalAnswer(answer=state.answer)
    assert calls.calls == [
        ("population", {"city": "Lyon"}),
        ("population", {"city": "Nantes"}),
        ("add", {"a": 522250, "b": 323204}),
    ]
    assert conversation_problems(state.messages) == []
    assert [m.role for m in state.messages] == ["user", "assistant"] * 3
    first = llm.requests[0]
    assert first.system == "Be exact."
    assert [t.name for t in first.tools] == ["population", "add", "explode"]
    nodes = [h.node for h in app.history(result.run_id)]
    assert nodes == ["reason", "act", "reason", "act", "reason", "finish"]


def test_unknown_tool_bad_input_and_tool_error_become_failed_observations() -> None:
    def script(req: LLMRequest) -> Any:
        if len(req.messages) == 1:
            return {
                "tool_calls": [
                    call("teleport", {"to": "Mars"}, "t1"),
                    call("add", {"a": "one"}, "t2"),
                    call("explode", {"reason": "test"}, "t3"),
                ]
            }
        return "None of that worked."

    calls = ToolCalls()
    llm = ScriptedLLM(script)
    result = react_agent(llm, make_tools(calls)).compile(store=":memory:").run_sync({"task": "x"})

    observations = [s.observation for s in result.state.steps[:3]]
    assert [o.success for o in observations] == [False, False, False]  # type: ignore[union-attr]
    unknown, bad_input, raised = (o.content for o in observations)  # type: ignore[union-attr]
    assert "no tool named 'teleport'" in unknown and "population, add, explode" in unknown
    assert "ToolInputError" in bad_input and "'a'" in bad_input and "'b'" in bad_input
    assert raised == "RuntimeError: boom: test"
    # the model saw every error as an is_error tool_result, in call order
    sent = results_sent(llm.requests[1])
    assert [(b.tool_use_id, b.is_error) for b in sent] == [("t1", True), ("t2", True), ("t3", True)]
    assert calls.calls == [("explode", {"reason": "test"})]  # nothing else ran
    assert result.state.status == "answered"


def test_step_limit_ends_with_max_steps_and_no_answer() -> None:
    def always_a_tool(req: LLMRequest) -> Any:
        turn = (len(req.messages) + 1) // 2
        return {"tool_calls": [call("add", {"a": turn, "b": 1}, f"t{turn}")]}

    calls = ToolCalls()
    app = react_agent(ScriptedLLM(always_a_tool), make_tools(calls), max_steps=3).compile(
        store=":memory:"
    )
    result = app.run_sync({"task": "count forever"})

    state = result.state
    assert result.status == "completed"
    assert (state.status, state.answer, state.turns) == ("max_steps", None, 3)
    assert state.error is not None and "max_steps=3" in state.error
    # the tool calls of the first two turns ran; the one asked in the last turn did not
    assert len(calls.calls) == 2
    assert [s.observation is not None for s in state.steps] == [True, True, False]
    assert isinstance(state.steps[-1].action, ToolAction)
    assert conversation_problems(state.messages) == []  # the unrun call got a tool_result
    assert "not run" in results_sent_of(state)[0].content


def results_sent_of(state: ReActState) -> list[ToolResultBlock]:
    return [b for b in state.messages[-1].blocks if isinstance(b, ToolResultBlock)]


def test_empty_native_reply_is_corrected_and_refusal_fails() -> None:
    def script(req: LLMRequest) -> Any:
        return "" if len(req.messages) == 1 else "Paris."

    state = react_agent(ScriptedLLM(script)).compile(store=":memory:").run_sync({"task": "?"}).state
    assert (state.status, state.answer, state.turns) == ("answered", "Paris.", 2)
    assert state.steps[0].observation is not None and not state.steps[0].observation.success
    assert conversation_problems(state.messages) == []

    refusing = ScriptedLLM([{"text": "I can't help with that.", "stop_reason": "refusal"}])
    state = react_agent(refusing).compile(store=":memory:").run_sync({"task": "?"}).state
    assert (state.status, state.answer) == ("failed", None)
    assert state.error is not None and "refusal" in state.error


def test_invalid_arguments_are_refused_when_building() -> None:
    llm = ScriptedLLM(["x"])
    with pytest.raises(ValueError, match="max_steps=0"):
        react_agent(llm, max_steps=0)
    with pytest.raises(ValueError, match="protocol='json'"):
        react_agent(llm, protocol="json")  # type: ignore[arg-type]


# -- text protocol ----------------------------------------------------------------------------


def test_text_protocol_runs_tools_from_action_lines() -> None:
    def script(req: LLMRequest) -> Any:
        turn = (len(req.messages) + 1) // 2
        if turn == 1:  # a plain-string input, and an invented observation to cut off
            return (
                "Thought: I need Lyon's population.\nI will use the tool.\n"
                "Action: population(Lyon)\nObservation: 1 million\nFinal Answer: 1 million"
            )
        if turn == 2:
            return 'Thought: now add\nAction: add({"a": 522250, "b": 1})'
        return "Thought: done\nFinal Answer: 522251"

    calls = ToolCalls()
    llm = ScriptedLLM(script)
    app = react_agent(llm, make_tools(calls), protocol="text").compile(store=":memory:")
    state = app.run_sync({"task": "Lyon plus one?"}).state

    assert (state.status, state.answer) == ("answered", "522251")
    assert calls.calls == [("population", {"city": "Lyon"}), ("add", {"a": 522250, "b": 1})]
    assert state.steps[0].thought == "I need Lyon's population.\nI will use the tool."
    assert state.steps[0].action == ToolAction(tool="population", input="Lyon")
    assert "1 million" not in state.messages[1].text  # the invented observation is gone
    assert state.messages[2].text == "Observation: 522250"
    # tools are described in the system prompt, not sent as native tools
    assert llm.requests[0].tools == []
    assert "population" in (llm.requests[0].system or "")
    assert "Final Answer:" in (llm.requests[0].system or "")


def test_text_protocol_corrects_unusable_replies_and_reports_tool_errors() -> None:
    def script(req: LLMRequest) -> Any:
        turn = (len(req.messages) + 1) // 2
        return {
            1: "I think the answer is probably 42.",  # neither an action nor an answer
            2: 'Thought: try\nAction: teleport({"to": "Mars"})',  # unknown tool
            3: "Action: add(5)",  # a string for a two-argument tool
            4: "Thought: ok\nFinal Answer: 42",
        }[turn]

    llm = ScriptedLLM(script)
    app = react_agent(llm, make_tools(), protocol="text").compile(store=":memory:")
    state = app.run_sync({"task": "?"}).state

    assert (state.status, state.answer, state.turns) == ("answered", "42", 4)
    correction, unknown, bad_input = (s.observation for s in state.steps[:3])
    assert (
        correction is not None
        and not correction.success
        and correction.content.startswith("I could not use your reply")
    )
    assert llm.requests[1].messages[-1].text == correction.content
    assert unknown is not None and not unknown.success
    assert "available tools: population, add, explode" in unknown.content
    assert llm.requests[2].messages[-1].text.startswith("Observation (error): UnknownTool")
    assert bad_input is not None and "takes several arguments (a, b)" in bad_input.content
    assert conversation_problems(state.messages) == []


def test_text_protocol_gives_up_at_the_step_limit_without_inventing_an_answer() -> None:
    llm = ScriptedLLM(lambda req: "hmm, let me think")
    state = (
        react_agent(llm, protocol="text", max_steps=2)
        .compile(store=":memory:")
        .run_sync({"task": "?"})
        .state
    )
    assert (state.status, state.answer, state.turns) == ("max_steps", None, 2)
    assert len(llm.requests) == 2
    assert all(s.action is None for s in state.steps)
    assert "Tools you can use" not in (llm.requests[0].system or "")  # it has none


def test_a_conversation_given_as_input_is_continued() -> None:
    llm = ScriptedLLM(lambda req: f"You said: {req.messages[-1].text}")
    history = [user("Hi"), assistant("Hello!"), user("What is 2 + 2?")]
    app = react_agent(llm).compile(store=":memory:")
    state = app.run_sync({"task": "chat", "messages": history}).state
    assert state.answer == "You said: What is 2 + 2?"
    assert llm.requests[0].messages == history


# -- durability -------------------------------------------------------------------------------


def test_native_agent_survives_a_crash_at_every_point() -> None:
    app = react_agent(ScriptedLLM(population_script), make_tools()).compile(store=":memory:")
    report = resumable(app, {"task": "How many people live in Lyon and Nantes?"})
    assert report.crash_points > 10
    assert {"effect.before_call", "effect.after_call"} <= report.points_reached


def test_text_agent_survives_a_crash_at_every_point() -> None:
    def script(req: LLMRequest) -> Any:
        turn = (len(req.messages) + 1) // 2
        return "Action: population(Nantes)" if turn == 1 else "Final Answer: 323204"

    app = react_agent(ScriptedLLM(script), make_tools(), protocol="text").compile(store=":memory:")
    resumable(app, {"task": "Nantes?"})


def test_replay_calls_neither_the_model_nor_the_tools(tmp_path: Any) -> None:
    db = tmp_path / "runs.db"
    live = react_agent(ScriptedLLM(population_script), make_tools()).compile(store=db)
    result = live.run_sync({"task": "How many people live in Lyon and Nantes?"})

    offline = react_agent(RaisingLLM(), make_tools(broken=True)).compile(store=db)
    report = assert_replays(offline, result.run_id)
    assert report.identical


def test_a_failed_model_call_fails_the_run_and_resume_does_not_repeat_turns(
    tmp_path: Any,
) -> None:
    db = tmp_path / "runs.db"

    class Flaky:
        model = "scripted"

        def __init__(self) -> None:
            self.requests = 0

        async def complete(self, messages: Any, **kwargs: Any) -> Any:
            self.requests += 1
            if len(messages) > 1:
                raise LLMError("overloaded", status_code=529)
            return await ScriptedLLM(population_script).complete(messages, **kwargs)

    flaky = Flaky()
    app = react_agent(flaky, make_tools()).compile(store=db)
    with pytest.raises(NodeFailed) as failed:
        app.run_sync({"task": "How many people live in Lyon and Nantes?"}, run_id="flaky")
    assert failed.value.node == "reason"

    fixed = ScriptedLLM(population_script)
    result = asyncio.run(react_agent(fixed, make_tools()).compile(store=db).resume("flaky"))
    assert result.state.status == "answered"
    assert len(fixed.requests) == 2  # turns 2 and 3; turn 1 was committed before the failure


# -- composition ------------------------------------------------------------------------------


def test_the_agent_runs_as_a_subgraph_of_a_user_graph() -> None:
    from pydantic import BaseModel

    class Outer(BaseModel):
        question: str
        answer: str | None = None
        outcome: str = ""
        report: str = ""

    agent = react_agent(ScriptedLLM(population_script), make_tools()).compile(store=":memory:")

    def write_report(s: Outer) -> dict[str, Any]:
        return {"report": f"[{s.outcome}] {s.answer}"}

    g = GraphBuilder(Outer, name="outer")
    # child fields by name: task <- question; answer -> answer, status -> outcome
    g.add_node(
        "agent",
        agent,
        input_map={"task": "question"},
        output_map={"answer": "answer", "outcome": "status"},
    )
    g.add_node(write_report)
    g.add_edge(START, "agent")
    g.add_edge("agent", "write_report")
    g.add_edge("write_report", END)
    app = g.compile(store=":memory:")
    result = app.run_sync({"question": "How many people live in Lyon and Nantes?"})
    assert result.state.report == "[answered] Together they have 845454 inhabitants."
    child = [h for h in app.history(result.run_id) if h.depth == 1]
    assert [h.node for h in child] == ["reason", "act", "reason", "act", "reason", "finish"]


# -- the real SDK ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_native_tool_use_with_anthropic_llm(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(
        message(
            text("Looking up Lyon."),
            tool_use("population", {"city": "Lyon"}, id="toolu_a"),
            usage=(40, 12),
        ),
        message(text("Lyon has 522250 inhabitants."), usage=(60, 9)),
    )
    calls = ToolCalls()
    # cache="off": the plain request shape (caching, on by default, is tested in
    # test_react_claude.py)
    app = react_agent(anthropic_llm, make_tools(calls), system="Be brief.", cache="off").compile(
        store=":memory:"
    )

    result = await app.run({"task": "How many people live in Lyon?"})

    assert (result.state.status, result.state.answer) == (
        "answered",
        "Lyon has 522250 inhabitants.",
    )
    assert calls.calls == [("population", {"city": "Lyon"})]
    first, second = server.bodies
    assert first["system"] == "Be brief."
    assert [t["name"] for t in first["tools"]] == ["population", "add", "explode"]
    assert first["tools"][0]["input_schema"]["required"] == ["city"]
    assert second["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "522250", "is_error": False}
    ]
    usage = [h.usage for h in app.history(result.run_id) if h.node == "reason"]
    assert usage == [
        {
            "input_tokens": 40,
            "output_tokens": 12,
            "input_tokens@claude-test": 40,
            "output_tokens@claude-test": 12,
        },
        {
            "input_tokens": 60,
            "output_tokens": 9,
            "input_tokens@claude-test": 60,
            "output_tokens@claude-test": 9,
        },
    ]


class MutatingLLM:
    """A (badly behaved) model that changes the conversation it is given, in place."""

    def __init__(self, inner: ScriptedLLM) -> None:
        self.inner = inner
        self.model = inner.model
        self.seen: list[list[Any]] = []

    async def complete(self, messages: list[Any], **kwargs: Any) -> Any:
        self.seen.append([m.model_copy(deep=True) for m in messages])
        reply = await self.inner.complete(messages, **kwargs)
        for m in messages:
            if isinstance(m.content, str):
                m.content = "changed by the model"
            else:
                m.content.clear()
        messages.clear()
        return reply


def test_reason_reads_the_conversation_uncopied_but_the_model_gets_its_own_copy() -> None:
    """`reason` reads the state's messages without the engine's per-activation copy (a
    JSON round trip of the whole conversation each turn); the model still gets a copy (the
    request rebuilt from its journaled JSON), so a model that changes its input in place
    cannot reach the state, the store or the next turn."""
    model = MutatingLLM(ScriptedLLM(population_script))
    app = react_agent(model, make_tools()).compile(store=":memory:")

    result = app.run_sync({"task": "How many people live in Lyon and Nantes?"})

    state = result.state
    assert state.answer == "Together they have 845454 inhabitants.", state
    assert state.messages[0] == user("How many people live in Lyon and Nantes?")
    assert conversation_problems(state.messages) == []
    # every request the model saw was the whole, intact conversation so far
    assert [len(seen) for seen in model.seen] == [1, 3, 5]
    assert all(seen == state.messages[: len(seen)] for seen in model.seen)
    assert app.get_state(result.run_id).messages == state.messages
