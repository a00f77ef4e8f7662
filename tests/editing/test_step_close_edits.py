"""Edits and a step whose close failed (StepCloseFailed, FS216): a routing edit gives the
step's outcome; an edit made before the failure survives resume(rerun_step=True)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowstate import EditRefused, StepCloseFailed
from tests.lifecycle.close_graphs import make


def test_a_routing_edit_is_the_outcome_of_a_step_that_could_not_close(tmp_path: Path) -> None:
    (tmp_path / "kind").write_text("conflict")
    app = make(tmp_path).compile(store=str(tmp_path / "runs.db"))
    with pytest.raises(StepCloseFailed) as e:
        app.run_sync({"items": [1, 2, 3]}, run_id="r")
    assert "as_node=NODE" in e.value.message
    with pytest.raises(EditRefused, match=r"FS222.*as_node=NODE"):
        app.update_state("r", {"n": 5})  # the step's committed writes read the old state
    app.update_state("r", {"n": 5}, as_node="work", by="ops")
    done = app.resume_sync("r")
    assert done.status == "completed" and done.state.n == 6  # 5, then done adds 1
    # the superseded writes are kept as attempts; the history shows the edit in their place
    assert [a.task_path for a in app.store.attempts("r") if a.attempt < 0] == [
        "work[0]",
        "work[1]",
        "work[2]",
    ]
    assert [(h.node, h.edit) for h in app.history("r")] == [
        ("split", False),
        ("work", True),
        ("done", False),
    ]
    assert asyncio.run(app.replay("r")).identical


def test_an_edit_survives_rerun_step(tmp_path: Path) -> None:
    (tmp_path / "kind").write_text("conflict")
    app = make(tmp_path).compile(store=str(tmp_path / "runs.db"), interrupt_before=("work",))
    assert app.run_sync({"items": [1, 2, 3]}, run_id="r").status == "paused"
    app.update_state("r", {"parts": [7]})
    with pytest.raises(StepCloseFailed):  # (the breakpoint stops before each Send)
        while app.resume_sync("r").status == "paused":
            pass
    (tmp_path / "node_fixed").touch()
    done = app.resume_sync("r", rerun_step=True)
    assert done.state.parts == [7, 100, 200, 300]
    assert [h.update for h in app.history("r") if h.edit] == [{"parts": [7]}]
    assert asyncio.run(app.replay("r")).identical


def test_resume_with_update_and_rerun_step_edits_the_rerun_steps_input(tmp_path: Path) -> None:
    (tmp_path / "kind").write_text("conflict")
    app = make(tmp_path).compile(store=str(tmp_path / "runs.db"))
    with pytest.raises(StepCloseFailed):
        app.run_sync({"items": [1, 2, 3]}, run_id="r")
    (tmp_path / "node_fixed").touch()
    done = app.resume_sync("r", update={"parts": [9]}, rerun_step=True)
    assert done.state.parts == [9, 100, 200, 300]
    assert asyncio.run(app.replay("r")).identical
