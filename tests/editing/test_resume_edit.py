"""resume(update=..., goto=...): LangGraph's Command(resume=, update=, goto=), recorded and
replayed offline; the CLI and the service expose the same."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from flowstate import EditRefused
from flowstate.cli import app as cli

from .graphs import asking_graph, routed_graph


def test_resume_with_update_and_goto_replays_offline(db_path):
    app = routed_graph().compile(store=str(db_path), interrupt_before=("b",))
    app.run_sync({"n": 1}, run_id="r1")
    done = app.resume_sync("r1", update={"n": 7, "log": ["patched"]}, goto="c")
    assert done.status == "completed"
    assert done.state.log == ["a:1", "patched", "c:7"]  # 'b' replaced by 'c'
    edits = [h for h in app.history("r1") if h.edit]
    assert [(h.step, h.update) for h in edits] == [(1, {"n": 7, "log": ["patched"]})]
    report = asyncio.run(app.replay("r1"))
    assert report.identical and report.replay_status == "completed"


def test_resume_with_an_answer_and_an_update(db_path):
    app = asking_graph().compile(store=str(db_path))
    app.run_sync({"n": 3}, run_id="r1")
    done = app.resume_sync("r1", "ok", update={"note": "n.b."})
    assert done.state.log == ["a:3", "ask:ok:n.b.", "c:3"]
    assert asyncio.run(app.replay("r1")).identical


def test_goto_with_an_answer_is_refused_and_nothing_is_stored(db_path):
    app = asking_graph().compile(store=str(db_path))
    app.run_sync({"n": 3}, run_id="r1")
    with pytest.raises(EditRefused, match=r"FS222.*answer the interrupt first"):
        app.resume_sync("r1", "ok", goto="c")
    assert app.get_run("r1").status == "paused"
    assert not [h for h in app.history("r1") if h.edit]
    assert app.pending_interrupts("r1")


def test_cli_resume_update_and_goto(tmp_path):
    db = str(tmp_path / "cli.db")
    g = "tests.editing.test_resume_edit:CLI_GRAPH"
    runner = CliRunner()
    r = runner.invoke(cli, ["run", g, "--db", db, "--run-id", "r1", "--input", '{"n": 1}'])
    assert r.exit_code == 3 and "paused: breakpoint before 'b'" in r.output
    r = runner.invoke(cli, ["resume", "r1", "--db", db, "--graph", g, "--update", "[1]"])
    assert r.exit_code == 1 and "--update must be a JSON object" in r.output
    r = runner.invoke(
        cli,
        ["resume", "r1", "--db", db, "--graph", g, "--update", '{"n": 4}', "--goto", "c"],
    )
    assert r.exit_code == 0, r.output
    assert '"c:4"' in r.output and '"b:' not in r.output


CLI_GRAPH = routed_graph().compile(store=None, interrupt_before=("b",))
