"""A step whose activations all committed but whose close fails (issue 16 item 5).

The close fails on a dynamic ``WriteConflict`` between ``Send`` activations or on a
custom reducer refusing at merge. The run stays ``failed`` with ``StepCloseFailed``
(never ``running``), every committed activation is kept, and the error names the way out:
``resume`` after fixing the reducer re-attempts the close with the committed updates;
``resume(rerun_step=True)`` after fixing the node runs the step's activations again,
keeping the superseded writes as attempts rows, with journaled effects served from the
journal. A kill -9 during the re-run loses nothing and performs no effect twice.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowstate import NodeFailed, StepCloseFailed, WriteConflict
from flowstate.errors import UpdateRejected
from tests.lifecycle.close_graphs import lines, make

CHILD = str(Path(__file__).resolve().parent / "close_child.py")
PREFIX = "superseded by resume(rerun_step=True): "


def _failed_run(d: Path, kind: str) -> tuple[object, StepCloseFailed]:
    (d / "kind").write_text(kind)
    app = make(d).compile(store=str(d / "runs.db"))
    with pytest.raises(StepCloseFailed) as e:
        app.run_sync({"items": [1, 2, 3]}, run_id="r")
    return app, e.value


def _step1(d: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(d / "runs.db") as c:
        rows = c.execute(
            'SELECT task_path, "update" FROM writes WHERE step = 1 ORDER BY seq'
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_a_write_conflict_keeps_the_run_failed_and_rerun_step_recovers(tmp_path: Path) -> None:
    app, err = _failed_run(tmp_path, "conflict")
    assert isinstance(err, NodeFailed) and isinstance(err.__cause__, WriteConflict)
    assert err.way_out == "rerun_step" and err.step == 1
    assert "rerun_step=True" in err.message and "update_state" in err.message
    committed = _step1(tmp_path)
    assert [u for _, u in committed] == ['{"n":100}', '{"n":200}', '{"n":300}']
    run = app.get_run("r")  # type: ignore[attr-defined]
    assert run.status == "failed" and run.error is not None and "FS216" not in run.error
    assert "could not close" in run.error
    # a plain resume cannot help: it fails the same way and the run stays failed
    for _ in range(2):
        with pytest.raises(StepCloseFailed):
            app.resume_sync("r")  # type: ignore[attr-defined]
        assert app.get_run("r").status == "failed"  # type: ignore[attr-defined]
        assert _step1(tmp_path) == committed
    (tmp_path / "node_fixed").touch()
    r = app.resume_sync("r", rerun_step=True)  # type: ignore[attr-defined]
    assert r.status == "completed" and r.state.parts == [100, 200, 300] and r.state.n == 1
    # the superseded writes are kept, one attempts row each, with their updates
    gone = [a for a in app.store.attempts("r") if a.attempt < 0]  # type: ignore[attr-defined]
    assert [(a.task_path, a.attempt) for a in gone] == [
        ("work[0]", -1),
        ("work[1]", -1),
        ("work[2]", -1),
    ]
    old = [json.loads(a.error.removeprefix(PREFIX))["update"] for a in gone]
    assert old == [u for _, u in committed]
    # the effects were journaled by the first activations: served, never performed again
    assert sorted(x.split()[0] for x in lines(tmp_path / "calls")) == ["1", "2", "3"]
    assert len(lines(tmp_path / "runs")) == 6  # each node ran twice: before and after
    assert [e.node for e in app.history("r")] == ["split", "work", "work", "work", "done"]  # type: ignore[attr-defined]


def test_a_refusing_reducer_keeps_the_run_failed_and_resume_recovers(tmp_path: Path) -> None:
    app, err = _failed_run(tmp_path, "reducer")
    assert isinstance(err.__cause__, UpdateRejected) and err.way_out == "resume"
    assert "Fix the reducer" in err.message and "refuses" in err.message
    committed = _step1(tmp_path)
    assert len(committed) == 3
    with pytest.raises(StepCloseFailed):
        app.resume_sync("r")  # type: ignore[attr-defined]
    assert app.get_run("r").status == "failed"  # type: ignore[attr-defined]
    (tmp_path / "reducer_fixed").touch()
    r = app.resume_sync("r")  # type: ignore[attr-defined]
    assert r.status == "completed" and r.state.total == 600
    assert _step1(tmp_path) == committed  # the committed updates were merged, as stored
    assert len(lines(tmp_path / "runs")) == 3  # no activation ran again
    assert app.store.attempts("r") == []  # type: ignore[attr-defined]


def test_kill_9_during_the_rerun_loses_nothing(tmp_path: Path) -> None:
    _kill_trial(tmp_path)


@pytest.mark.slow
def test_kill_9_during_the_rerun_loses_nothing_repeated(tmp_path: Path) -> None:
    for i in range(6):
        d = tmp_path / str(i)
        d.mkdir()
        _kill_trial(d)


def _kill_trial(tmp_path: Path) -> None:
    app, _ = _failed_run(tmp_path, "conflict")
    committed = _step1(tmp_path)
    app.store.close()  # type: ignore[attr-defined]
    (tmp_path / "node_fixed").touch()
    (tmp_path / "slow").touch()
    p = subprocess.Popen(
        [sys.executable, CHILD, str(tmp_path), "r", "--rerun-step"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    # wait until the re-run committed items 1 and 3 while item 2 sleeps, then kill
    while not (
        f"2 {p.pid}" in lines(tmp_path / "runs")
        and sorted(t for t, _ in _step1(tmp_path)) == ["work[0]", "work[2]"]
    ):
        assert p.poll() is None, p.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the re-run made no progress"
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    (tmp_path / "slow").unlink()
    app = make(tmp_path).compile(store=str(tmp_path / "runs.db"))
    r = app.resume_sync("r")  # a plain resume finishes the re-run
    assert r.status == "completed" and r.state.parts == [100, 200, 300]
    gone = [a for a in app.store.attempts("r") if a.attempt < 0]
    assert len(gone) == 3 and {a.attempt for a in gone} == {-1}
    assert [json.loads(a.error.removeprefix(PREFIX))["update"] for a in gone] == [
        u for _, u in committed
    ]
    assert sorted(x.split()[0] for x in lines(tmp_path / "calls")) == ["1", "2", "3"]
    ran = [x.split()[0] for x in lines(tmp_path / "runs")]
    assert sorted(ran) == ["1", "1", "2", "2", "2", "3", "3"]
