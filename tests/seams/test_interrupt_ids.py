"""Item 2 of issue 15: every pending interrupt has a stable id, is listed in task order,
and is answered by id."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flowstate import RunStateError
from flowstate.cli import app as cli
from flowstate.engine import pending_interrupts

from .graphs import fan_out_asks, two_asks


def test_twelve_sends_are_listed_in_numeric_task_order_and_answered_by_id(tmp_path):
    app = fan_out_asks().compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({"n": 12}, run_id="r")
    assert r.status == "paused"
    assert [i.task_path for i in r.interrupts] == [f"ask[{k}]" for k in range(12)]
    assert [i.id for i in r.interrupts] == [f"1:ask[{k}]:0" for k in range(12)]
    assert [i.payload for i in r.interrupts] == [{"item": k} for k in range(12)]
    assert {i.node for i in r.interrupts} == {"ask"}
    # every answer reaches the item it names
    r = app.resume_sync("r", answers={i.id: f"a{i.payload['item']}" for i in r.interrupts})
    assert r.status == "completed"
    assert sorted(r.state.answers) == sorted(f"{k}=a{k}" for k in range(12))


def test_a_single_value_is_refused_when_several_are_pending(tmp_path):
    app = fan_out_asks().compile(store=str(tmp_path / "x.db"))
    app.run_sync({"n": 3}, run_id="r")
    with pytest.raises(RunStateError) as e:
        app.resume_sync("r", value="yes")
    assert "3 pending interrupts" in str(e.value)
    for k in range(3):
        assert f"'1:ask[{k}]:0'" in str(e.value)
    # nothing was answered by the refused call
    assert len(app.pending_interrupts("r")) == 3
    with pytest.raises(RunStateError, match="no pending interrupt '9:nope:0'"):
        app.resume_sync("r", answers={"9:nope:0": 1, "1:ask[0]:0": 2})
    assert len(app.pending_interrupts("r")) == 3


def test_answers_a_subset_and_the_rest_stay_pending(tmp_path):
    app = fan_out_asks().compile(store=str(tmp_path / "x.db"))
    app.run_sync({"n": 3}, run_id="r")
    r = app.resume_sync("r", answers={"1:ask[2]:0": "two"})
    assert r.status == "paused"
    assert [i.id for i in r.interrupts] == ["1:ask[0]:0", "1:ask[1]:0"]
    # only one left after this: then a plain value is enough
    r = app.resume_sync("r", answers={"1:ask[0]:0": "zero"})
    assert [i.id for i in r.interrupts] == ["1:ask[1]:0"]
    r = app.resume_sync("r", None)  # None is an answer too
    assert r.status == "completed"
    assert sorted(r.state.answers) == ["0=zero", "1=None", "2=two"]


def test_ids_are_the_same_in_another_process_handle(tmp_path):
    db = str(tmp_path / "x.db")
    first = fan_out_asks().compile(store=db).run_sync({"n": 11}, run_id="r")
    again = pending_interrupts(fan_out_asks().compile(store=db).store, "r")
    assert [i.id for i in again] == [i.id for i in first.interrupts]
    assert [i.payload for i in again] == [i.payload for i in first.interrupts]


def test_two_parallel_interrupts_the_reported_one_is_the_answered_one(tmp_path):
    app = two_asks().compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({}, run_id="r")
    assert [(i.id, i.node, i.payload) for i in r.interrupts] == [
        ("0:left:0", "left", "left?"),
        ("0:right:0", "right", "right?"),
    ]
    assert r.reason == "interrupt in 'left' (+1 more)"
    r = app.resume_sync("r", answers={"0:right:0": "R"})
    assert [i.id for i in r.interrupts] == ["0:left:0"]
    r = app.resume_sync("r", "L")
    assert r.status == "completed" and sorted(r.state.answers) == ["left=L", "right=R"]


def test_cli_lists_ids_and_answers_by_id(tmp_path):
    db = str(tmp_path / "x.db")
    fan_out_asks().compile(store=db).run_sync({"n": 2}, run_id="r")
    runner = CliRunner()
    out = runner.invoke(cli, ["show", "r", "--db", db])
    assert out.exit_code == 0, out.output
    assert "1:ask[0]:0" in out.output and "1:ask[1]:0" in out.output
    row = json.loads(runner.invoke(cli, ["runs", "--db", db, "--json"]).output)
    assert [i["id"] for i in row["interrupts"]] == ["1:ask[0]:0", "1:ask[1]:0"]
    g = "tests.seams.graphs:fan_out_asks"
    out = runner.invoke(cli, ["resume", "r", "-g", g, "--db", db, "-q", "--value", '"x"'])
    assert out.exit_code != 0 and "2 pending interrupts" in out.output
    out = runner.invoke(
        cli, ["resume", "r", "-g", g, "--db", db, "-q", "--answer", '1:ask[1]:0={"ok": 1}']
    )
    assert out.exit_code == 3, out.output  # still paused: one left
    assert "waiting for input [1:ask[0]:0]" in out.output
    out = runner.invoke(cli, ["resume", "r", "-g", g, "--db", db, "-q", "--answer", "1:ask[0]:0=7"])
    assert out.exit_code == 0, out.output
    state = fan_out_asks().compile(store=db).get_state("r")
    assert sorted(state.answers) == ["0=7", "1={'ok': 1}"]
    out = runner.invoke(cli, ["resume", "r", "-g", g, "--db", db, "--answer", "nonsense"])
    assert out.exit_code != 0 and "ID=JSON" in out.output
