"""Crash and resume with real processes killed by SIGKILL (RELIABILITY.md R1, fast tier)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.refgraphs import GRAPHS

CHILD = str(Path(__file__).resolve().parents[1] / "crash_child.py")


def _golden(tmp: Path, graph: str) -> dict:
    app = GRAPHS[graph](str(tmp / "golden-sink.db"), 0.0).compile(store=str(tmp / "golden.db"))
    r = app.run_sync({}, run_id="golden")
    return r.state.model_dump()


def _child(
    db: Path, graph: str, run: str, sink: Path, delay: float, env: dict | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, CHILD, str(db), graph, run, str(sink), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _check_trial(db: Path, sink: Path, graph: str, run: str, golden: dict, kills: int) -> None:
    app = GRAPHS[graph](str(sink), 0.0).compile(store=str(db))
    assert app.store.integrity_check() == "ok"
    assert app.get_run(run).status == "completed"
    assert app.get_state(run).model_dump() == golden
    with sqlite3.connect(db) as c:
        dup = c.execute(
            "SELECT count(*) FROM (SELECT run_id, step, task_path, count(*) k FROM writes "
            "GROUP BY 1, 2, 3 HAVING k > 1)"
        ).fetchone()[0]
        assert dup == 0
        n_writes = c.execute("SELECT count(*) FROM writes WHERE run_id = ?", [run]).fetchone()[0]
        n_effects = c.execute("SELECT count(*) FROM effects WHERE run_id = ?", [run]).fetchone()[0]
    assert n_writes == len(golden["log"])
    assert n_effects == len(golden["log"])
    with sqlite3.connect(sink) as c:
        rows = c.execute("SELECT key, count(*) FROM deliveries GROUP BY key").fetchall()
    # every activation delivered under its own key; duplicates only from kills
    assert len(rows) == len(golden["log"])
    extra = sum(k - 1 for _, k in rows)
    width = {"fanout_join": 5}.get(graph, 1)  # activations that can be in flight at once
    assert extra <= kills * width, f"{extra} duplicate deliveries for {kills} kills"


@pytest.mark.parametrize("graph", ["linear20", "fanout_join", "loop"])
def test_random_sigkill_then_resume_matches_uninterrupted_run(tmp_path, graph):
    golden = _golden(tmp_path, graph)
    rnd = random.Random(hash(graph) & 0xFFFF)
    trials = 3
    for t in range(trials):
        db, sink, run = tmp_path / f"t{t}.db", tmp_path / f"t{t}-sink.db", f"run{t}"
        kills = 0
        # the first attempt is killed at a random moment; later attempts resume
        p = _child(db, graph, run, sink, 0.01)
        time.sleep(rnd.uniform(0.3, 0.9))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
        for _ in range(10):
            p = _child(db, graph, run, sink, 0.0)
            _out, err = p.communicate(timeout=60)
            if p.returncode == 0:
                break
            raise AssertionError(f"resume failed: {err}")
        _check_trial(db, sink, graph, run, golden, kills)


@pytest.mark.parametrize("graph", ["linear4"])
def test_crash_point_sweep_real_kill(tmp_path, graph):
    """Kill the process at each instrumented crash point in turn (FLOWSTATE_CRASH_AT=k):
    before BEGIN, before COMMIT, after COMMIT, before an effect, after an effect but before
    its journal row — then resume in a fresh process and compare with the golden run."""
    golden = _golden(tmp_path, graph)
    k = 1
    while True:
        db, sink, run = tmp_path / f"k{k}.db", tmp_path / f"k{k}-sink.db", "sweep"
        p = _child(db, graph, run, sink, 0.0, {"FLOWSTATE_CRASH_AT": str(k)})
        p.communicate(timeout=60)
        if p.returncode == 0:
            break  # the run completed before reaching crash point k: every point was covered
        assert p.returncode == -signal.SIGKILL
        r = _child(db, graph, run, sink, 0.0)
        _, err = r.communicate(timeout=60)
        if r.returncode != 0 and "no run" in err:
            # killed before the run row was committed: start again from scratch
            r = _child(db, graph, run, sink, 0.0)
            _out, err = r.communicate(timeout=60)
        assert r.returncode == 0, err
        _check_trial(db, sink, graph, run, golden, 1)
        k += 1
    assert k > 20, f"only {k - 1} crash points were reached"


test_crash_point_sweep_real_kill = pytest.mark.slow(test_crash_point_sweep_real_kill)
