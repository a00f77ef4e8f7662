"""A ReAct loop (LLM node -> tool node -> LLM node) with ScriptedLLM and with the real SDK
against the local Messages API server: completion, streaming, crash and resume."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from flowstate import SQLiteStore
from flowstate.llm import AnthropicLLM, ScriptedLLM, TextBlock, ToolResultBlock, tool
from flowstate.nodes import node_usage, run_usage
from tests.conftest import CrashingStore, SimulatedCrash
from tests.llm.messages_server import MessagesServer, message, text, tool_use

from .agents import Toolbox, build_agent, react_script


def result_blocks(message: Any) -> list[ToolResultBlock]:
    return [b for b in message.blocks if isinstance(b, ToolResultBlock)]


# -- ScriptedLLM ------------------------------------------------------------------------------


def test_react_loop_runs_to_completion_with_scripted_llm() -> None:
    box = Toolbox()
    llm = ScriptedLLM(react_script())
    app = build_agent(llm, box.tools)

    result = app.run_sync({"question": "Combined population of Lyon and Nantes?"})

    assert result.status == "completed"
    assert result.state.answer == "Together they have 842000 people."
    roles = [m.role for m in result.state.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    first_results = result_blocks(result.state.messages[2])
    assert [b.content for b in first_results] == ["522000", "320000"]  # call order
    assert [b.tool_use_id for b in first_results] == ["toolu_scripted_1", "toolu_scripted_2"]
    assert box.calls == {"population": 2, "add": 1}
    assert len(llm.requests) == 3
    # the prompt is sent once; later turns continue the conversation
    assert llm.requests[0].messages[0].text == (
        "Answer the question: Combined population of Lyon and Nantes?"
    )
    assert len(llm.requests[2].messages) == 5
    assert llm.requests[0].system == "You are a careful assistant. Use the tools."
    assert [t.name for t in llm.requests[0].tools] == ["population", "add"]
    nodes = [h.node for h in app.history(result.run_id)]
    assert nodes == ["agent", "tools", "agent", "tools", "agent"]


def at(model: str, inp: int, out: int) -> dict[str, int]:
    """The per-model keys `JournaledLLM` records next to the totals."""
    return {f"input_tokens@{model}": inp, f"output_tokens@{model}": out}


def test_usage_is_recorded_per_activation_and_summed() -> None:
    app = build_agent(ScriptedLLM(react_script()), Toolbox().tools)
    result = app.run_sync({"question": "Combined population of Lyon and Nantes?"})

    rows = app.store.writes(result.run_id)
    per_row = [(w.node, json.loads(w.usage)) for w in rows]
    assert per_row == [
        ("agent", {"input_tokens": 100, "output_tokens": 20, **at("scripted", 100, 20)}),
        ("tools", {}),
        ("agent", {"input_tokens": 150, "output_tokens": 10, **at("scripted", 150, 10)}),
        ("tools", {}),
        ("agent", {"input_tokens": 200, "output_tokens": 8, **at("scripted", 200, 8)}),
    ]
    assert run_usage(app.store, result.run_id) == {"input_tokens": 450, "output_tokens": 38}
    assert node_usage(app.store, result.run_id) == {
        "agent": {"input_tokens": 450, "output_tokens": 38}
    }


@pytest.mark.anyio
async def test_tokens_stream_as_events_with_scripted_llm() -> None:
    app = build_agent(ScriptedLLM(react_script()), Toolbox().tools)

    events = [e async for e in app.stream({"question": "Combined population?"})]

    tokens = [e for e in events if e.kind == "token"]
    assert "".join(t.text for t in tokens) == (
        "Let me look both up.Together they have 842000 people."
    )
    by_step = {t.step for t in tokens}
    assert by_step == {0, 4}  # the two agent activations that said something
    assert all(t.task_path == "agent" for t in tokens)
    assert events[-1].kind == "run_finished" and events[-1].status == "completed"


def test_a_tool_that_raises_becomes_an_error_observation_and_the_run_goes_on() -> None:
    @tool
    def population(city: str) -> int:
        """Population of a city."""
        if city == "Atlantis":
            raise LookupError(f"no census for {city}")
        return 1000

    llm = ScriptedLLM(
        [
            {
                "tool_calls": [
                    {"name": "population", "input": {"city": "Atlantis"}},
                    {"name": "population", "input": {"city": "Lyon"}},
                    {"name": "missing_tool", "input": {}},
                    {"name": "population", "input": {"town": "Lyon"}},
                ]
            },
            "Atlantis has no census; Lyon has 1000 people.",
        ]
    )
    app = build_agent(llm, [population])

    result = app.run_sync({"question": "Atlantis vs Lyon?"})

    assert result.status == "completed"
    assert result.state.answer == "Atlantis has no census; Lyon has 1000 people."
    blocks = result_blocks(result.state.messages[2])
    assert [b.is_error for b in blocks] == [True, False, True, True]
    assert blocks[0].content == "LookupError: no census for Atlantis"
    assert blocks[1].content == "1000"
    assert "UnknownTool" in blocks[2].content
    assert "ToolInputError" in blocks[3].content and "town" in blocks[3].content
    # the model saw the errors
    assert result_blocks(llm.requests[1].messages[-1])[0].is_error


def test_tool_calls_of_one_turn_run_concurrently() -> None:
    barrier_holder: dict[str, asyncio.Barrier] = {}

    @tool
    async def wait_for_peer(name: str) -> str:
        """Returns once both calls are running at the same time."""
        barrier = barrier_holder.setdefault("b", asyncio.Barrier(2))
        async with asyncio.timeout(5):
            await barrier.wait()  # deadlocks (times out) if the calls ran one after the other
        return f"{name} met its peer"

    llm = ScriptedLLM(
        [
            {
                "tool_calls": [
                    {"name": "wait_for_peer", "input": {"name": "first"}},
                    {"name": "wait_for_peer", "input": {"name": "second"}},
                ]
            },
            "both met",
        ]
    )
    result = build_agent(llm, [wait_for_peer]).run_sync({"question": "meet?"})

    blocks = result_blocks(result.state.messages[2])
    assert [b.content for b in blocks] == ["first met its peer", "second met its peer"]
    assert not any(b.is_error for b in blocks)


class CrashingTools(Toolbox):
    """Adds `slow_fetch`, which "kills the process" the first time, after `population` is
    done (its sibling call in the same turn has completed and been journaled)."""

    def __init__(self) -> None:
        super().__init__()
        self.crashes_left = 1

        @tool
        async def slow_fetch(url: str) -> str:
            """Fetch a page."""
            self.calls["slow_fetch"] += 1
            await asyncio.sleep(0.05)  # let the sibling call finish and journal first
            if self.crashes_left:
                self.crashes_left -= 1
                raise SimulatedCrash("the process died inside a tool")
            return f"<html>{url}</html>"

        self.slow_fetch = slow_fetch

    @property
    def tools(self) -> list[Any]:
        return [*super().tools, self.slow_fetch]


CRASH_TURN = {
    "tool_calls": [
        {"name": "population", "input": {"city": "Lyon"}},
        {"name": "slow_fetch", "input": {"url": "https://lyon.fr"}},
    ],
    "usage": {"input_tokens": 50, "output_tokens": 5},
}


def test_resume_after_a_crash_inside_the_tool_node_does_not_call_the_model_again(
    db_path: Path,
) -> None:
    box = CrashingTools()
    first = ScriptedLLM([CRASH_TURN])
    app = build_agent(first, box.tools, store=db_path)
    with pytest.raises(SimulatedCrash):
        app.run_sync({"question": "Lyon?"}, run_id="crashy")
    assert app.store.get_run("crashy").status == "running"  # the process "died"
    journaled = [e.name for e in app.store.effects("crashy", 1, "tools")]
    assert journaled == ["tool:population"]  # the sibling completed; slow_fetch did not

    # A new process: a fresh app and a model that only knows the final answer.
    second = ScriptedLLM(
        [{"text": "Lyon: 522000.", "usage": {"input_tokens": 80, "output_tokens": 4}}]
    )
    fresh = build_agent(second, box.tools, store=db_path)
    result = fresh.resume_sync("crashy")

    assert result.status == "completed"
    assert result.state.answer == "Lyon: 522000."
    assert len(first.requests) == 1 and len(second.requests) == 1  # no model call repeated
    assert box.calls == {"population": 1, "slow_fetch": 2}  # the finished tool did not re-run
    blocks = result_blocks(second.requests[0].messages[-1])
    assert [b.content for b in blocks] == ["522000", "<html>https://lyon.fr</html>"]
    assert run_usage(fresh.store, "crashy") == {"input_tokens": 130, "output_tokens": 9}


def test_resume_after_a_crash_right_after_the_model_node_committed(db_path: Path) -> None:
    box = Toolbox()
    first = ScriptedLLM(react_script()[:1])
    app = build_agent(first, box.tools, store=CrashingStore(db_path, crash_after=1))
    with pytest.raises(SimulatedCrash):
        app.run_sync({"question": "Combined population of Lyon and Nantes?"}, run_id="r1")
    assert box.calls == {}

    second = ScriptedLLM(react_script()[1:])
    result = build_agent(second, box.tools, store=SQLiteStore(db_path)).resume_sync("r1")

    assert result.status == "completed"
    assert result.state.answer == "Together they have 842000 people."
    assert len(first.requests) == 1 and len(second.requests) == 2
    assert box.calls == {"population": 2, "add": 1}


class DiesBeforeCommitting(SQLiteStore):
    """The process dies after the first `agent` activation's model call was journaled but
    before the activation committed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.died = False

    def commit(self, run_id, *, writes=(), effects=(), step=None, run_fields=None):  # type: ignore[no-untyped-def]
        if writes and writes[0].node == "agent" and not self.died:
            self.died = True
            raise SimulatedCrash("died before committing 'agent'")
        super().commit(run_id, writes=writes, effects=effects, step=step, run_fields=run_fields)


def test_a_rerun_model_node_is_served_from_the_journal_and_keeps_its_usage(
    db_path: Path,
) -> None:
    box = Toolbox()
    first = ScriptedLLM(react_script()[:1])
    app = build_agent(first, box.tools, store=DiesBeforeCommitting(db_path))
    with pytest.raises(SimulatedCrash):
        app.run_sync({"question": "Combined population of Lyon and Nantes?"}, run_id="r2")
    assert app.store.writes("r2") == []
    assert [e.name for e in app.store.effects("r2")] == ["llm.complete"]

    second = ScriptedLLM(react_script()[1:])
    fresh = build_agent(second, box.tools, store=db_path)
    result = fresh.resume_sync("r2")

    assert result.status == "completed"
    assert len(first.requests) == 1 and len(second.requests) == 2
    first_row = fresh.store.writes("r2")[0]
    assert first_row.node == "agent"
    assert json.loads(first_row.usage) == {
        "input_tokens": 100,
        "output_tokens": 20,
        **at("scripted", 100, 20),
    }
    assert run_usage(fresh.store, "r2") == {"input_tokens": 450, "output_tokens": 38}


# -- AnthropicLLM against the local Messages API server ---------------------------------------


def queue_react_replies(server: MessagesServer) -> None:
    server.reply(
        message(
            text("Let me look both up."),
            tool_use("population", {"city": "Lyon"}, id="toolu_a"),
            tool_use("population", {"city": "Nantes"}, id="toolu_b"),
            usage=(100, 20),
        ),
        message(tool_use("add", {"a": 522_000, "b": 320_000}, id="toolu_c"), usage=(150, 10)),
        message(text("Together they have 842000 people."), usage=(200, 8)),
    )


@pytest.mark.anyio
async def test_react_loop_with_anthropic_llm(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    queue_react_replies(server)
    box = Toolbox()
    app = build_agent(anthropic_llm, box.tools)

    result = await app.run({"question": "Combined population of Lyon and Nantes?"})

    assert result.status == "completed"
    assert result.state.answer == "Together they have 842000 people."
    assert box.calls == {"population": 2, "add": 1}
    bodies = server.bodies
    assert len(bodies) == 3
    assert all(b["stream"] is True for b in bodies)  # live calls stream tokens
    assert [t["name"] for t in bodies[0]["tools"]] == ["population", "add"]
    # the agent loop caches its prompt by default: system, tools, conversation
    assert bodies[0]["system"] == [
        {
            "type": "text",
            "text": "You are a careful assistant. Use the tools.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert "cache_control" in bodies[0]["tools"][-1]
    second_turn = bodies[1]["messages"]
    assert [m["role"] for m in second_turn] == ["user", "assistant", "user"]
    assert [(b["tool_use_id"], b["content"]) for b in second_turn[2]["content"]] == [
        ("toolu_a", "522000"),
        ("toolu_b", "320000"),
    ]
    used = run_usage(app.store, result.run_id)
    assert used["output_tokens"] == 38
    # the whole prompt is behind a breakpoint: written once, then read back on later turns
    assert used["cache_creation_input_tokens"] > 0 and used["cache_read_input_tokens"] > 0


@pytest.mark.anyio
async def test_tokens_stream_as_events_with_anthropic_llm(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    queue_react_replies(server)
    app = build_agent(anthropic_llm, Toolbox().tools)

    events = [e async for e in app.stream({"question": "Combined population?"})]

    tokens = [e.text for e in events if e.kind == "token"]
    assert len(tokens) > 2
    assert "".join(tokens) == "Let me look both up.Together they have 842000 people."


@pytest.mark.anyio
async def test_resume_after_a_tool_crash_does_not_call_the_server_again(
    server: MessagesServer, anthropic_llm: AnthropicLLM, db_path: Path
) -> None:
    box = CrashingTools()
    server.reply(
        message(
            tool_use("population", {"city": "Lyon"}, id="toolu_p"),
            tool_use("slow_fetch", {"url": "https://lyon.fr"}, id="toolu_f"),
        )
    )
    app = build_agent(anthropic_llm, box.tools, store=db_path)
    with pytest.raises(SimulatedCrash):
        await app.run({"question": "Lyon?"}, run_id="crashy")
    assert len(server.requests) == 1

    server.reply(message(text("Lyon: 522000.")))
    fresh = build_agent(anthropic_llm, box.tools, store=db_path)
    result = await fresh.resume("crashy")

    assert result.status == "completed"
    assert result.state.answer == "Lyon: 522000."
    assert len(server.requests) == 2  # the first turn was not asked again
    assert box.calls == {"population": 1, "slow_fetch": 2}
    last = server.bodies[1]["messages"][-1]["content"]
    assert [b["tool_use_id"] for b in last] == ["toolu_p", "toolu_f"]
    assert isinstance(result.state.messages[-1].blocks[0], TextBlock)
