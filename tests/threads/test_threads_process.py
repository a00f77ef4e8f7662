"""Threads across processes: a turn killed with SIGKILL resumes where it was, and new input
meets a turn running in another process with each strategy (reject, enqueue, interrupt)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowstate import ThreadBusy

from .chatgraph import LOOPS, make, user

ROOT = Path(__file__).resolve().parents[2]
CHILD = str(Path(__file__).resolve().with_name("chatgraph.py"))


def _child(db: Path, message: str, delay: float, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, CHILD, str(db), "t", message, str(delay), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_turn(app: object, turn: int, writes: int = 1, timeout: float = 60.0) -> str:
    """The run id of turn ``turn`` once it has committed ``writes`` activations."""
    store = app.store  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = store.thread_runs("t")
        if len(runs) >= turn and len(store.writes(runs[turn - 1].id)) >= writes:
            return runs[turn - 1].id
        time.sleep(0.02)
    raise AssertionError(f"turn {turn} did not commit {writes} activations in {timeout}s")


def test_a_turn_killed_by_sigkill_resumes_as_that_turn(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    app = make(db)
    app.run_sync(user("one"), thread_id="t")
    p = _child(db, "two", 0.3)
    try:
        victim = _wait_for_turn(app, 2, writes=2)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        p.kill()
    assert p.returncode == -signal.SIGKILL
    run = app.get_run(victim)
    assert (run.status, run.turn) == ("running", 2)
    done_before = len(app.store.writes(victim))
    # the dead process's 'running' is no live turn: new input names it and says resume
    with pytest.raises(ThreadBusy, match=f"run {victim}\\) left running by a process that died"):
        app.run_sync(user("three"), thread_id="t")
    r2 = app.resume_sync(victim)
    assert r2.status == "completed" and app.get_run(victim).turn == 2
    assert r2.state.messages == [
        "user: one",
        "bot: one (1 before)",
        "user: two",
        "bot: two (3 before)",
    ]
    assert r2.state.total == 2 * LOOPS
    # committed activations did not run again: one write and one journaled pause each
    assert len(app.store.writes(victim)) == LOOPS + 1 >= done_before
    assert len(app.store.effects(victim)) == LOOPS
    r3 = app.run_sync(user("three"), thread_id="t")
    assert r3.state.messages[-1] == "bot: three (5 before)"
    assert [t.turn for t in app.thread("t").turns] == [1, 2, 3]
    assert asyncio.run(app.replay(victim)).identical


def test_each_strategy_against_a_turn_running_in_another_process(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    app = make(db)
    app.run_sync(user("one"), thread_id="t")
    p = _child(db, "two", 0.4)
    try:
        running = _wait_for_turn(app, 2)
        with pytest.raises(ThreadBusy, match=f"turn 2 \\(run {running}\\) running") as e:
            app.run_sync(user("x"), thread_id="t")
        assert e.value.run_id == running
        # enqueue: waits for the other process's turn, then runs here from its final state
        r3 = app.run_sync(user("three"), thread_id="t", multitask_strategy="enqueue")
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert out.strip() == "completed", err
    assert app.get_run(running).status == "completed"
    assert r3.status == "completed"
    assert r3.state.messages[-4:] == [
        "user: two",
        "bot: two (3 before)",
        "user: three",
        "bot: three (5 before)",
    ]
    # interrupt: the other process's turn stops at its next boundary, cancelled; the new
    # turn starts from its last commit
    p = _child(db, "four", 0.4)
    try:
        victim = _wait_for_turn(app, 4)
        r5 = app.run_sync(user("five"), thread_id="t", multitask_strategy="interrupt")
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert out.strip() == "cancelled", err
    assert app.get_run(victim).status == "cancelled"
    kept = app.get_state(victim)
    assert kept.ticks < LOOPS
    assert r5.status == "completed"
    assert r5.state.messages == [*kept.messages, "user: five", "bot: five (8 before)"]
    assert [t.status for t in app.thread("t").turns] == [
        "completed",
        "completed",
        "completed",
        "cancelled",
        "completed",
    ]
