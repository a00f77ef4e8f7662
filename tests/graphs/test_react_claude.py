"""The ReAct agent and crews on real Claude workloads (issue 18), through the real SDK and the
local Messages API server: prompt caching over 10 turns, cost, max_tokens, stop sequences,
extended thinking in the tool loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowstate.graphs import debate_crew, react_agent
from flowstate.llm import DEFAULT_PRICES, AnthropicLLM, ModelPrice, ThinkingBlock, tool
from flowstate.nodes import usage_report
from tests.llm.conftest import TEST_KEY, TEST_MODEL
from tests.llm.messages_server import MessagesServer, message, text, thinking, tool_use

pytestmark = pytest.mark.anyio

PRICES = {**DEFAULT_PRICES, TEST_MODEL: ModelPrice(input=3.0, output=15.0)}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_a_ten_turn_react_run_reads_its_prefix_from_the_cache(
    server: MessagesServer, anthropic_llm: AnthropicLLM, tmp_path: Path
) -> None:
    system = "You add numbers with the add tool, one step at a time. " * 30
    for turn in range(9):
        server.reply(message(tool_use("add", {"a": turn, "b": 1}, id=f"t{turn}"), usage=(0, 20)))
    server.reply(message(text("The total is 9."), usage=(0, 8)))
    app = react_agent(anthropic_llm, [add], system=system, max_steps=10).compile(
        store=str(tmp_path / "runs.db")
    )

    result = await app.run({"task": "Add one, nine times."})

    assert (result.state.status, result.state.answer) == ("answered", "The total is 9.")
    assert result.state.turns == 10
    for body in server.bodies:  # never more than the API's 4 breakpoints
        marks = str(body).count("cache_control")
        assert 3 <= marks <= 4
    reads = [
        h.usage.get("cache_read_input_tokens", 0)
        for h in app.history(result.run_id)
        if h.node == "reason"
    ]
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    assert reads == sorted(reads)  # each turn reads a longer prefix
    report = usage_report(app.store, result.run_id, prices=PRICES)
    total = report.total
    assert total.cache_read_input_tokens == sum(reads)
    assert total.cache_read_input_tokens > 5 * total.cache_creation_input_tokens
    assert total.output_tokens == 9 * 20 + 8
    expected = (
        total.input_tokens * 3.0
        + total.output_tokens * 15.0
        + total.cache_creation_input_tokens * 3.75
        + total.cache_read_input_tokens * 0.3
    ) / 1e6
    assert total.cost_usd == pytest.approx(expected)
    assert report.nodes["reason"].cost_usd == pytest.approx(expected)
    uncached = (total.tokens - total.output_tokens) * 3.0 / 1e6 + total.output_tokens * 15.0 / 1e6
    assert total.cost_usd < 0.5 * uncached  # what caching saves on this run


async def test_a_cut_off_final_answer_is_continued(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(
        message(text("The answer is"), stop_reason="max_tokens"),
        message(text(" 42."), stop_reason="end_turn"),
    )
    app = react_agent(anthropic_llm, [add], max_tokens=4).compile(store=":memory:")
    result = await app.run({"task": "?"})
    assert (result.state.status, result.state.answer) == ("answered", "The answer is 42.")
    assert result.state.steps[-1].stop_reason == "end_turn"


async def test_still_cut_off_ends_truncated_not_answered(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(message(text("The answer is"), stop_reason="max_tokens"))
    app = react_agent(anthropic_llm, [add], max_tokens=4, max_continuations=0).compile(
        store=":memory:"
    )
    result = await app.run({"task": "?"})
    state = result.state
    assert (state.status, state.answer) == ("truncated", None)
    assert "cut off at max_tokens=4" in (state.error or "")
    assert state.steps[-1].stop_reason == "max_tokens"


async def test_a_cut_off_tool_call_is_never_run(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    ran: list[int] = []

    @tool
    def record(n: int) -> int:
        """Record a number."""
        ran.append(n)
        return n

    server.reply(
        message(text("Let me record."), tool_use("record", {"n": 1}), stop_reason="max_tokens")
    )
    app = react_agent(anthropic_llm, [record]).compile(store=":memory:")
    result = await app.run({"task": "record 1"})
    assert result.state.status == "truncated"
    assert "tool call was cut off" in (result.state.error or "")
    assert ran == []
    assert all(b.type != "tool_use" for m in result.state.messages for b in m.blocks)


async def test_text_protocol_sends_the_observation_stop_sequence(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(
        message(text('Thought: add\nAction: add({"a": 2, "b": 3})\nObservation: 7 (invented)')),
        message(text("Thought: done\nFinal Answer: 5")),
    )
    app = react_agent(anthropic_llm, [add], protocol="text").compile(store=":memory:")
    result = await app.run({"task": "2+3"})
    assert server.bodies[0]["stop_sequences"] == ["Observation:"]
    assert result.state.answer == "5"
    first = result.state.steps[0]
    assert first.stop_reason == "stop_sequence"
    assert first.observation is not None and first.observation.content == "5"
    assert "invented" not in str(server.bodies[1]["messages"])


async def test_thinking_goes_back_unchanged_through_the_tool_loop_and_replays(
    server: MessagesServer, tmp_path: Path
) -> None:
    async with AnthropicLLM(
        TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, thinking=1024
    ) as llm:
        server.reply(
            message(thinking("I need the add tool."), tool_use("add", {"a": 2, "b": 3}, id="t1")),
            message(thinking("It returned 5."), text("5")),
        )
        app = react_agent(llm, [add]).compile(store=str(tmp_path / "runs.db"))
        result = await app.run({"task": "2+3"})
        # the server checks the signature and that the tool-loop turn starts with thinking
        assert (result.state.status, result.state.answer) == ("answered", "5")
        assert isinstance(result.state.messages[1].blocks[0], ThinkingBlock)
        assert "It returned" not in (result.state.answer or "")
        report = await app.replay(result.run_id)
    assert report.identical, report.summary()
    assert len(server.requests) == 2


async def test_debate_synthesis_cut_off_ends_truncated(
    server: MessagesServer, anthropic_llm: AnthropicLLM
) -> None:
    server.reply(
        message(text("A")),
        message(text("B")),
        message(text("The synthesis is"), stop_reason="max_tokens"),
        message(text(" still going"), stop_reason="max_tokens"),
        message(text(" and going"), stop_reason="max_tokens"),
    )
    app = debate_crew(anthropic_llm, n_agents=2, rounds=0).compile(store=":memory:")
    result = await app.run({"task": "Pick one."})
    assert result.state.status == "truncated"
    assert result.state.answer in ("", None)
    assert "cut off at max_tokens" in result.state.log[-1].content
