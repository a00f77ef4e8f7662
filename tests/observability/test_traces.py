"""Spans and metrics of runs, activations, effects, LLM and tool calls, subgraphs and
Send fan-outs, read back through the SDK's in-memory exporter and metric reader."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from flowstate.observability import configure

from .conftest import Telemetry, attrs, sc
from .graphs import agent_graph, agent_services, flaky_graph


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    hit = [s for s in spans if sc(s).span_id == span.parent.span_id]
    return hit[0] if hit else None


def test_span_tree_of_a_run_with_fan_out_llm_tool_and_subgraph(otel: Telemetry, tmp_path: Path):
    app = agent_graph().compile(store=str(tmp_path / "runs.db"))
    agent_services(app)
    r = app.run_sync({"items": [1, 2, 3]}, run_id="r1")
    assert r.status == "completed" and r.state.x == 28

    spans = otel.spans()
    assert len({sc(s).trace_id for s in spans}) == 1, "one run is one trace"
    root = otel.one("flowstate.run agent")
    assert root.parent is None
    assert attrs(root)["flowstate.run.id"] == "r1"
    assert attrs(root)["flowstate.run.status"] == "completed"
    assert attrs(root)["flowstate.run.kind"] == "start"

    # one span per activation, each a child of the run
    squares = otel.named("flowstate.node square")
    assert len(squares) == 3
    assert sorted(attrs(s)["flowstate.task_path"] for s in squares) == sorted(
        {attrs(s)["flowstate.task_path"] for s in squares}
    )
    for s in [*squares, otel.one("flowstate.node split"), otel.one("flowstate.node ask")]:
        assert parent_of(s, spans) is root
        assert attrs(s)["flowstate.outcome"] == "committed"
        assert attrs(s)["flowstate.attempt"] == 1
    assert {attrs(s)["flowstate.step"] for s in squares} == {1}

    # the LLM call: effect span under the activation, a GenAI chat span under the effect
    ask = otel.one("flowstate.node ask")
    llm_effect = otel.one("flowstate.effect llm.complete")
    assert parent_of(llm_effect, spans) is ask
    assert attrs(llm_effect)["flowstate.effect.replayed"] is False
    chat = otel.one("chat claude-scripted")
    assert parent_of(chat, spans) is llm_effect
    assert chat.kind == SpanKind.CLIENT
    a = attrs(chat)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.system"] == "anthropic"
    assert a["gen_ai.request.model"] == "claude-scripted"
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.usage.input_tokens"] == 12
    assert a["gen_ai.usage.output_tokens"] == 3
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("end_turn",)
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a

    # the tool call
    tool_effect = otel.one("flowstate.effect tool:add")
    assert parent_of(tool_effect, spans) is ask
    call = otel.one("execute_tool add")
    assert parent_of(call, spans) is tool_effect
    assert attrs(call)["gen_ai.tool.name"] == "add"
    assert attrs(call)["gen_ai.tool.call.id"] == "call-1"
    assert "gen_ai.tool.call.arguments" not in attrs(call)

    # the subgraph's run nests under the activation that started it
    child_node = otel.one("flowstate.node child")
    sub_run = otel.one("flowstate.run doubler")
    assert parent_of(sub_run, spans) is child_node
    assert attrs(sub_run)["flowstate.run.subgraph"] is True
    assert attrs(sub_run)["flowstate.run.id"].startswith("r1/")
    assert parent_of(otel.one("flowstate.node double"), spans) is sub_run

    # every span is inside its parent's time window
    for s in spans:
        p = parent_of(s, spans)
        if p is not None:
            assert (p.start_time or 0) <= (s.start_time or 0), (s.name, p.name)
            assert (s.end_time or 0) <= (p.end_time or 0), (s.name, p.name)

    # the trace context is stored with the run
    config = json.loads(app.store.get_run("r1").config)
    assert config["trace"]["traceparent"].startswith(
        f"00-{sc(root).trace_id:032x}-{sc(root).span_id:016x}-"
    )

    # metrics by graph / node / model
    assert otel.total("flowstate.activations", **{"flowstate.graph": "agent"}) == 6
    assert otel.total("flowstate.activations", **{"flowstate.node": "square"}) == 3
    assert otel.total("flowstate.activations", **{"flowstate.graph": "doubler"}) == 1
    tokens = {"flowstate.node": "ask", "gen_ai.request.model": "claude-scripted"}
    assert otel.total("flowstate.llm.tokens", **tokens, **{"gen_ai.token.type": "input"}) == 12
    assert otel.total("flowstate.llm.tokens", **tokens, **{"gen_ai.token.type": "output"}) == 3
    usage = otel.points("gen_ai.client.token.usage")
    assert {a["gen_ai.token.type"] for a, _ in usage} == {"input", "output"}
    runs = otel.points("flowstate.run.duration")
    assert {(a["flowstate.graph"], a["flowstate.run.status"]) for a, _ in runs} == {
        ("agent", "completed"),
        ("doubler", "completed"),
    }
    assert otel.total("flowstate.effects", **{"flowstate.effect.name": "tool:add"}) == 1


def test_prompt_and_completion_only_when_opted_in(otel: Telemetry, tmp_path: Path):
    configure(
        tracer_provider=otel.tracer_provider,
        meter_provider=None,
        capture_content=True,
    )
    app = agent_graph().compile(store=str(tmp_path / "runs.db"))
    agent_services(app)
    app.run_sync({"items": [1]})
    chat = attrs(otel.one("chat claude-scripted"))
    assert "sum of [1]?" in chat["gen_ai.input.messages"]
    assert "fourteen" in chat["gen_ai.output.messages"]
    call = attrs(otel.one("execute_tool add"))
    assert json.loads(call["gen_ai.tool.call.arguments"]) == {"a": 2, "b": 3}
    assert json.loads(call["gen_ai.tool.call.result"]) == "5"


def test_cost_from_the_runs_prices(otel: Telemetry, tmp_path: Path):
    from flowstate import Limits

    app = agent_graph().compile(store=str(tmp_path / "runs.db"))
    agent_services(app)
    app.run_sync(
        {"items": [1]}, limits=Limits(input_price_per_mtok=3.0, output_price_per_mtok=15.0)
    )
    expected = (12 * 3.0 + 3 * 15.0) / 1e6
    assert attrs(otel.one("chat claude-scripted"))["flowstate.llm.cost_usd"] == expected
    assert abs(otel.total("flowstate.llm.cost", **{"flowstate.node": "ask"}) - expected) < 1e-12


def test_retries_and_failures(otel: Telemetry, tmp_path: Path):
    import pytest

    from flowstate.errors import NodeFailed

    app = flaky_graph(fail_times=1).compile(store=str(tmp_path / "a.db"))
    assert app.run_sync({}).status == "completed"
    attempts = sorted(otel.named("flowstate.node flaky"), key=lambda s: s.start_time or 0)
    assert [attrs(s)["flowstate.attempt"] for s in attempts] == [1, 2]
    assert [attrs(s)["flowstate.outcome"] for s in attempts] == ["retrying", "committed"]
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[0].events and attempts[0].events[0].name == "exception"
    assert otel.total("flowstate.activation.retries", **{"flowstate.node": "flaky"}) == 1

    otel.exporter.clear()
    app = flaky_graph(fail_times=5).compile(store=str(tmp_path / "b.db"))
    with pytest.raises(NodeFailed):
        app.run_sync({})
    outcomes = [attrs(s)["flowstate.outcome"] for s in otel.named("flowstate.node flaky")]
    assert sorted(outcomes) == ["failed", "retrying", "retrying"]
    run = otel.one("flowstate.run flaky")
    assert attrs(run)["flowstate.run.status"] == "failed"
    assert run.status.status_code == StatusCode.ERROR
    assert otel.total("flowstate.activation.failures", **{"flowstate.node": "flaky"}) == 1
    assert otel.total("flowstate.activations", **{"flowstate.outcome": "failed"}) == 1


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(items=st.lists(st.integers(-50, 50), max_size=8))
def test_one_span_per_committed_activation_for_any_fan_out(otel: Telemetry, items: list[int]):
    from tests.composition.graphs import map_reduce

    otel.exporter.clear()
    app = map_reduce().compile(store="memory://")
    r = app.run_sync({"items": items})
    assert r.status == "completed"
    spans = otel.spans()
    (root,) = [s for s in spans if s.name.startswith("flowstate.run")]
    nodes = [s for s in spans if s.name.startswith("flowstate.node")]
    writes = app.store.writes(r.run_id)
    assert len(nodes) == len(writes)
    assert sorted(
        (attrs(s)["flowstate.step"], attrs(s)["flowstate.task_path"]) for s in nodes
    ) == sorted((w.step, w.task_path) for w in writes)
    assert all(s.parent is not None and s.parent.span_id == sc(root).span_id for s in nodes)
    assert {sc(s).trace_id for s in spans} == {sc(root).trace_id}
