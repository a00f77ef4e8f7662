"""One writer per run (issue 10 item 1; RELIABILITY.md G4, G5): leases, takeover, fencing,
with real processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from flowstate.errors import RunOwned
from tests.lifecycle.owner_graphs import slow_chain

CHILD = str(Path(__file__).resolve().parent / "owner_child.py")


def _spawn(db: Path, run: str, mode: str, ttl: float = 30.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, CHILD, str(db), run, mode, str(ttl)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _writes(db: Path) -> int:
    try:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT count(*) FROM writes").fetchone()[0]
    except sqlite3.Error:
        return 0


def _wait_writes(db: Path, n: int, timeout: float = 30) -> None:
    t = time.time() + timeout
    while _writes(db) < n:
        assert time.time() < t, "the run made no progress"
        time.sleep(0.02)


def _no_duplicate_writes(db: Path) -> None:
    with sqlite3.connect(db) as c:
        dup = c.execute(
            "SELECT count(*) FROM (SELECT step, task_path, count(*) k FROM writes "
            "GROUP BY 1, 2 HAVING k > 1)"
        ).fetchone()[0]
    assert dup == 0


def test_second_runner_of_a_live_run_is_refused_naming_the_owner(tmp_path):
    db = tmp_path / "x.db"
    p = _spawn(db, "r", "run")
    _wait_writes(db, 2)
    # hold the owner mid-run (its 30 s lease stays valid) so the second runner meets a
    # live run however slowly it starts on a loaded machine; then let the owner finish
    os.kill(p.pid, signal.SIGSTOP)
    try:
        q = _spawn(db, "r", "resume")
        out, err = q.communicate(timeout=60)
    finally:
        os.kill(p.pid, signal.SIGCONT)
    assert q.returncode == 4, err
    refused = json.loads(out)
    assert refused["outcome"] == "owned" and f":{p.pid}:" in refused["owner"]
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err and json.loads(out)["n"] == 12
    _no_duplicate_writes(db)


def test_two_processes_racing_to_resume_a_crashed_run(tmp_path):
    db = tmp_path / "x.db"
    p = _spawn(db, "r", "run")
    _wait_writes(db, 3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    a, b = _spawn(db, "r", "resume"), _spawn(db, "r", "resume")
    results = []
    for q in (a, b):
        out, _ = q.communicate(timeout=90)
        results.append((q.returncode, json.loads(out)))
    codes = sorted(r[0] for r in results)
    assert codes == [0, 4], results  # exactly one proceeds, the other is refused
    done = next(r[1] for r in results if r[0] == 0)
    assert done == {"outcome": "completed", "n": 12}
    _no_duplicate_writes(db)
    calls = Counter(line.split()[0] for line in db.with_suffix(".calls").read_text().splitlines())
    # only the activation in flight at the kill may have run twice
    assert sum(n - 1 for n in calls.values()) <= 1


def test_a_stopped_owner_loses_the_run_and_its_commits_are_rejected(tmp_path):
    db = tmp_path / "x.db"
    ttl = 1.0
    p = _spawn(db, "r", "run", ttl)
    _wait_writes(db, 2)
    os.kill(p.pid, signal.SIGSTOP)  # a zombie owner: alive, but not heartbeating
    try:
        time.sleep(ttl + 0.3)
        q = _spawn(db, "r", "resume", ttl)
        out, err = q.communicate(timeout=90)
        assert q.returncode == 0, err
        assert json.loads(out) == {"outcome": "completed", "n": 12}
        committed = _writes(db)
    finally:
        os.kill(p.pid, signal.SIGCONT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 5, (out, err)  # the former owner's commit was fenced out
    assert json.loads(out)["outcome"] == "lease_lost"
    assert _writes(db) == committed == 12
    _no_duplicate_writes(db)


def test_resume_can_wait_for_the_owner(tmp_path):
    db = tmp_path / "x.db"
    p = _spawn(db, "r", "run")
    _wait_writes(db, 1)
    app = slow_chain(tmp_path / "c.calls").compile(store=str(db))
    with pytest.raises(RunOwned):
        app.resume_sync("r")
    r = app.resume_sync("r", wait=60)  # waits until the owner finishes, then has nothing to do
    assert r.status == "completed" and r.state.n == 12
    p.communicate(timeout=60)


def test_lease_is_released_and_fenced_in_process(tmp_path):
    app = slow_chain(tmp_path / "c.calls", length=2, delay=0).compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({}, run_id="r")
    owner, epoch, until = app.store.lease("r")
    assert r.status == "completed" and owner is None and until is None and epoch == 1
    assert "r" not in app.store.fences
