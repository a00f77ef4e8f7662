"""Durable time with real processes: a waiter killed with SIGKILL during ``ctx.sleep`` is
woken on time by a new process, and two schedulers running at once start exactly one run
per firing time. Time is a file-backed ``TestClock`` (``FLOWSTATE_CLOCK``) the test moves."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flowstate import wake_due
from flowstate.checkpoints import SQLiteStore
from flowstate.clock import TestClock, use_clock
from tests.time_graphs import sleeper

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FLOWSTATE_CLOCK": str(tmp_path / "clock"),
        "TIME_COUNTER": str(tmp_path / "count"),
        **extra,
    }


def _cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstate.cli", *args],
        cwd=tmp_path,
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _until(cond, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_waiter_killed_during_its_sleep_is_woken_on_time_by_a_new_process(tmp_path):
    clock = TestClock(T0, path=str(tmp_path / "clock"))
    db = str(tmp_path / "t.db")
    G = "tests.time_graphs:sleeper"
    # the first process holds the (journaled) sleep in process, and is killed during it
    p = subprocess.Popen(
        [sys.executable, "-m", "flowstate.cli", "run", G, "--db", db, "--run-id", "w", "-q"],
        cwd=tmp_path,
        env=_env(tmp_path, TIME_HOLD="100000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    store = SQLiteStore(db)
    try:
        _until(
            lambda: (
                any(e.name == "flowstate.sleep" for e in store.effects("w", 0, "nap"))
                if Path(db).exists() and store.find_run("w")
                else False
            ),
            "the sleep to be journaled",
        )
        time.sleep(0.2)
        assert p.poll() is None, "the waiter should still be waiting"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert store.get_run("w").status == "running"  # died mid-run
    # half the wait passes while nothing runs; a new process resumes the crashed run: the
    # journal says when the wait began, so it pauses until T0+3600, not 3600 s from now
    clock.advance(1800)
    r = _cli(tmp_path, "resume", "w", "--graph", G, "--db", db, "-q")
    assert r.returncode == 3, r.stderr  # paused
    assert store.get_run("w").status == "paused"
    assert store.wake_time("w") == T0 + 3600
    clock.set(T0 + 3599)
    with use_clock(clock):  # this process reads the same file-backed clock
        assert asyncio.run(wake_due(store, {"sleeper": sleeper.bind(store)})) == []
    assert store.get_run("w").status == "paused", "woken a second early"
    clock.set(T0 + 3600)
    r = _cli(tmp_path, "resume", "--due", "--graph", G, "--db", db)
    assert r.returncode == 0, r.stderr
    assert "woke run w: completed" in r.stdout
    assert store.get_run("w").status == "completed"
    # the effect before the sleep ran once, across three processes
    assert (tmp_path / "count").read_text().splitlines() == ["prep"]
    store.close()


def test_two_schedulers_in_two_processes_start_one_run_per_firing(tmp_path):
    clock = TestClock(T0, path=str(tmp_path / "clock"))
    db = str(tmp_path / "s.db")
    G = "tests.time_graphs:ticker"
    r = _cli(
        tmp_path, "schedule", "add", "tick", "--graph", G, "--db", db,
        "--cron", "* * * * *", "--input", '{"n": 100}', "--catchup", "skip",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    args = ["schedule", "run", "--graph", G, "--db", db, "--poll", "0.05"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flowstate.cli", *args],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    store = SQLiteStore(db)
    try:
        firings = 6
        for k in range(1, firings + 1):
            clock.set(T0 + 60 * k + 1)  # just past the k-th minute
            _until(lambda k=k: len(store.firings("tick")) >= k, f"firing {k}")
            time.sleep(0.3)  # both schedulers look again meanwhile
        _until(
            lambda: all(
                store.get_run(rid).status == "completed" for _, rid in store.firings("tick")
            ),
            "the fired runs to complete",
        )
        for p in procs:
            assert p.poll() is None, p.stderr.read().decode() if p.stderr else ""
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    fired = store.firings("tick")
    minute = T0 - T0 % 60
    assert [t for t, _ in fired] == [minute + 60 * k for k in range(1, firings + 1)]
    runs = store.list_runs(graph="ticker", limit=100)
    assert len(runs) == firings  # one run per firing time, none twice
    assert {r.id for r in runs} == {rid for _, rid in fired}
    store.close()
