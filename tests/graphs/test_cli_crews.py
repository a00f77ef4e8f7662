"""Every prebuilt graph from the command line (issue 18, item 8), and tokens and cost of a run
tree in `flowstate show` and in cost budgets (item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowstate.cli import app as cli
from flowstate.engine import Limits
from flowstate.graphs import CrewSpecError, crew_from_spec, react_agent
from flowstate.llm import DEFAULT_PRICES, AnthropicLLM, ModelPrice, ScriptedLLM, tool
from flowstate.nodes import usage_report
from tests.llm.conftest import TEST_KEY
from tests.llm.messages_server import MessagesServer, message, text, tool_use

runner = CliRunner()


def script(tmp_path: Path, n: int, answer: str = "an answer") -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"text": f"{answer} {i}"} for i in range(n)]))
    return f"scripted:{path}"


def test_debate_crew_runs_from_the_cli_with_only_a_model(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    r = runner.invoke(
        cli,
        [
            "run",
            "flowstate.graphs:debate_crew",
            "--llm",
            script(tmp_path, 10),
            "--db",
            db,
            "--input",
            '{"task": "Tea or coffee?"}',
            "--run-id",
            "d1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert '"status": "done"' in r.output


@pytest.mark.parametrize(
    ("target", "missing"),
    [
        ("flowstate.graphs:orchestrator_crew", "'specialists'"),
        ("flowstate.graphs:pipeline_crew", "'agents'"),
        ("flowstate.graphs:coordinator_crew", "'agents'"),
    ],
)
def test_crews_that_need_agents_say_so_in_one_line(
    tmp_path: Path, target: str, missing: str
) -> None:
    r = runner.invoke(
        cli, ["run", target, "--llm", script(tmp_path, 1), "--db", str(tmp_path / "x.db")]
    )
    assert r.exit_code == 1
    assert "Traceback" not in r.output and "TypeError" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, r.output
    assert "FS150" in lines[0] and missing in lines[0] and "crew spec file" in lines[0]
    assert isinstance(r.exception, SystemExit)


@pytest.mark.parametrize(
    ("name", "calls"),
    [
        ("writing_pipeline", 3),
        ("panel_debate", 7),
        ("research_crew", 3),
        ("support_coordinator", 1),
    ],
)
def test_ready_made_example_crews_run_by_name(tmp_path: Path, name: str, calls: int) -> None:
    answers = {
        "research_crew": ["facts", "the facts", "a synthesis"],
        "support_coordinator": ["ANSWER: restart it"],
    }.get(name)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(answers or [f"text {i}" for i in range(calls)]))
    r = runner.invoke(
        cli,
        [
            "run",
            f"flowstate.graphs.examples:{name}",
            "--llm",
            f"scripted:{path}",
            "--db",
            str(tmp_path / "e.db"),
            "--input",
            '{"task": "Help me."}',
        ],
    )
    assert r.exit_code == 0, r.output
    assert '"status": "done"' in r.output


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def test_a_crew_spec_file_with_a_tool_agent_runs_and_show_reports_the_tree(
    tmp_path: Path, messages_server: MessagesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = messages_server
    server.reset()
    spec = tmp_path / "crew.toml"
    spec.write_text(
        'crew = "pipeline"\n'
        "[[agents]]\n"
        'name = "loud"\n'
        'role = "Shout the request with the shout tool."\n'
        'tools = ["tests.graphs.test_cli_crews:shout"]\n'
        "[[agents]]\n"
        'name = "writer"\n'
        'role = "Write one sentence about it."\n'
    )
    model = "claude-sonnet-4-5"
    server.reply(
        message(tool_use("shout", {"text": "tea"}, id="t1"), usage=(100, 10), model=model),
        message(text("TEA"), usage=(120, 5), model=model),
        message(text("Tea is loud."), usage=(50, 7), model=model),
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    db = str(tmp_path / "s.db")
    r = runner.invoke(
        cli,
        [
            "run",
            str(spec),
            "--llm",
            "anthropic:claude-sonnet-4-5",
            "--db",
            db,
            "--input",
            '{"task": "tea"}',
            "--run-id",
            "p1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Tea is loud." in r.output
    # the tool agent is a ReAct subgraph: a child run whose tokens belong to the tree
    from flowstate.checkpoints import SQLiteStore

    report = usage_report(SQLiteStore(db), "p1")
    total = report.total
    assert total.output_tokens == 22 and total.unpriced_models == []
    loud = report.nodes["loud/loud/reason"]  # the ReAct agent caches its prompt by default
    assert loud.output_tokens == 15 and loud.cache_read_input_tokens > 0
    assert report.nodes["writer"].input_tokens == 50  # one-shot: no cache breakpoints
    price = DEFAULT_PRICES["claude-sonnet-4-5"]
    assert total.cost_usd == pytest.approx(price.cost(total.model_dump()))
    top = [line for name, line in report.nodes.items() if "/" not in name]
    assert total.cost_usd == pytest.approx(sum(line.cost_usd for line in top))
    # the subgraph node's own line counts its child run, priced per model like the rest
    assert report.nodes["loud"].output_tokens == loud.output_tokens
    assert report.nodes["loud"].cost_usd == pytest.approx(report.nodes["loud/loud/reason"].cost_usd)
    r = runner.invoke(cli, ["show", "p1", "--db", db])
    assert r.exit_code == 0, r.output
    assert "loud/loud/reason" in r.output and "writer" in r.output
    assert f"cost: ${report.total.cost_usd:.6f}" in r.output
    prices = tmp_path / "prices.json"
    prices.write_text('{"claude-sonnet-4-5": {"input": 1000000, "output": 0}}')
    r = runner.invoke(cli, ["show", "p1", "--db", db, "--prices", str(prices)])
    # $1 a plain input token; cache writes and reads default to 1.25x and 0.1x of it
    edited = (
        total.input_tokens
        + 1.25 * total.cache_creation_input_tokens
        + 0.1 * total.cache_read_input_tokens
    )
    assert f"cost: ${edited:.6f}" in r.output
    server.reset()


def test_crew_spec_errors_name_the_culprit(tmp_path: Path) -> None:
    llm = ScriptedLLM([])
    with pytest.raises(CrewSpecError, match="'parade' is not a crew"):
        crew_from_spec({"crew": "parade", "agents": []}, llm)
    with pytest.raises(CrewSpecError, match="needs a role"):
        crew_from_spec({"crew": "pipeline", "agents": [{"name": "a"}]}, llm)
    with pytest.raises(CrewSpecError, match="cannot import tool 'nope:x'"):
        crew_from_spec(
            {"crew": "pipeline", "agents": [{"name": "a", "role": "r", "tools": ["nope:x"]}]},
            llm,
        )
    with pytest.raises(CrewSpecError, match="take no option 'roundz'"):
        crew_from_spec(
            {
                "crew": "debate",
                "roundz": 2,
                "agents": [{"name": "a", "role": "r"}, {"name": "b", "role": "r"}],
            },
            llm,
        )


@pytest.mark.anyio
async def test_cost_budget_prices_each_model_from_the_table(
    server: MessagesServer, tmp_path: Path
) -> None:
    prices = {**DEFAULT_PRICES, "claude-test": ModelPrice(input=100.0, output=100.0)}
    for i in range(5):
        server.reply(message(tool_use("shout", {"text": "x"}, id=f"t{i}"), usage=(1000, 0)))
    async with AnthropicLLM("claude-test", api_key=TEST_KEY, base_url=server.base_url) as llm:
        app = react_agent(llm, [shout], cache="off").compile(
            store=str(tmp_path / "b.db"), limits=Limits(cost_budget=0.25, prices=prices)
        )
        result = await app.run({"task": "shout"})
        # each turn costs 1000 * $100 / 1M = $0.10: the budget pauses after the third turn
        assert result.status == "paused" and "cost budget: $0.3000" in (result.reason or "")
        server.reply(message(text("done"), usage=(1000, 0)))
        resumed = await app.resume(result.run_id, limits=Limits(cost_budget=10, prices=prices))
    assert resumed.status == "completed"
    assert (resumed.state.answer, resumed.state.turns) == ("done", 6)
    server.reset()


@pytest.mark.anyio
async def test_cost_budget_counts_a_subgraph_agent_and_its_parent_together(
    server: MessagesServer, tmp_path: Path
) -> None:
    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder

    class Outer(BaseModel):
        task: str
        answer: str | None = None

    prices = {**DEFAULT_PRICES, "claude-test": ModelPrice(input=100.0, output=0.0)}
    for i in range(4):
        server.reply(message(tool_use("shout", {"text": "x"}, id=f"s{i}"), usage=(1000, 0)))
    async with AnthropicLLM("claude-test", api_key=TEST_KEY, base_url=server.base_url) as llm:
        agent = react_agent(llm, [shout], cache="off").compile()
        g = GraphBuilder(Outer)
        g.add_node("agent", agent)
        g.add_edge(START, "agent")
        g.add_edge("agent", END)
        app = g.compile(
            store=str(tmp_path / "t.db"), limits=Limits(cost_budget=0.25, prices=prices)
        )
        result = await app.run({"task": "shout"})
    # the child run pauses on the tree's budget ($0.10 a turn) and the parent with it
    assert result.status == "paused"
    assert "cost budget: $0.3000" in (result.reason or "")
    assert server.pending == 1
    server.reset()
