"""A SIGSTOPped owner that lost its lease stores nothing after the takeover (issue 16
item 6).

A real process owns a run and is stopped (SIGSTOP) in the middle of its node; a second
process waits for the lease to expire, takes the run over and finishes it; then the first
is continued (SIGCONT) and goes on with its node: it tries to store an update, journal an
effect, record a failed attempt or raise an interrupt. Every one of those rows carries a
``late-ROLE-PID`` tag; none of the former owner's may be in the database. (The review
found an ``attempts`` row of the former owner in 22 of 27 trials.)
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = str(Path(__file__).resolve().parent / "stop_child.py")
MODES = ("write", "effect", "fail", "interrupt")


def _stored_text(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as c:
        parts = [
            repr(c.execute(f"SELECT * FROM {t}").fetchall())
            for t in ("writes", "effects", "attempts", "interrupts", "steps")
        ]
    return "\n".join(parts)


def _trial(tmp_path: Path, mode: str, i: int) -> None:
    db = tmp_path / f"{mode}{i}.db"

    def child(role: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, CHILD, str(db), "r", role, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = child("first")
    mid = Path(str(db) + ".mid")
    deadline = time.monotonic() + 30
    while not mid.exists():
        assert first.poll() is None, first.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the first owner never reached its node"
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        second = child("second")
        out2, err2 = second.communicate(timeout=60)
        assert json.loads(out2)["outcome"] in ("completed", "paused"), err2[-2000:]
    finally:
        first.send_signal(signal.SIGCONT)
    out1, err1 = first.communicate(timeout=60)
    assert json.loads(out1)["outcome"] != "completed", (out1, err1[-2000:])
    # the former owner did go on with its node (the trial is not vacuous)
    assert Path(str(db) + ".acted").read_text() == f"late-first-{first.pid}"
    stored = _stored_text(db)
    assert f"late-second-{second.pid}" in stored  # the new owner's rows are there
    assert f"late-first-{first.pid}" not in stored, f"the former owner stored a row ({mode})"


def test_a_stopped_owner_stores_nothing_after_a_takeover(tmp_path: Path) -> None:
    for mode in MODES:
        _trial(tmp_path, mode, 0)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_stopped_owner_stores_nothing_after_a_takeover_many(tmp_path: Path, mode: str) -> None:
    for i in range(7):
        _trial(tmp_path, mode, i)
