"""A cancel from another process stops the in-flight node from committing (issue 16
item 7).

The cancel is acknowledged when ``cancel()`` returns: its request (a ``signals`` row) and
the ``cancelled`` status are committed. From then on every fenced write of the owner is
refused inside its transaction (``CancelledElsewhere``), so the node that was running when
the cancel came finishes executing but commits nothing, and the status never goes
``cancelled`` → ``running`` → ``cancelled`` again.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.lifecycle.owner_graphs import slow_chain

CHILD = str(Path(__file__).resolve().parent / "owner_child.py")


def _count(db: Path) -> tuple[int, str]:
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT count(*) FROM writes").fetchone()[0]
        st = c.execute("SELECT status FROM runs WHERE id = 'r'").fetchone()
    return int(n), str(st[0]) if st else ""


def _trial(tmp_path: Path, at_writes: int) -> None:
    db = tmp_path / f"x{at_writes}.db"
    p = subprocess.Popen(
        [sys.executable, CHILD, str(db), "r", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while True:
        try:
            if _count(db)[0] >= at_writes:
                break
        except sqlite3.Error:
            pass
        assert time.time() < deadline, "no progress"
        time.sleep(0.01)
    app = slow_chain(db.with_suffix(".calls")).compile(store=str(db))
    app.cancel("r")
    acked, status = _count(db)
    assert status == "cancelled"
    statuses: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            statuses.append(_count(db)[1])
            time.sleep(0.01)

    w = threading.Thread(target=watch)
    w.start()
    out, err = p.communicate(timeout=60)
    stop.set()
    w.join()
    assert p.returncode == 0, err[-2000:]
    assert json.loads(out)["outcome"] == "cancelled", out
    final, status = _count(db)
    assert final == acked, f"{final - acked} activation(s) committed after the cancel ack"
    assert status == "cancelled" and set(statuses) == {"cancelled"}, statuses
    done = app.resume_sync("r")
    assert done.status == "completed" and done.state.n == 12
    app.store.close()


def test_a_cancel_from_another_process_stops_the_in_flight_commit(tmp_path: Path) -> None:
    for k in (1, 3):
        _trial(tmp_path, k)


@pytest.mark.slow
def test_a_cancel_from_another_process_stops_the_in_flight_commit_full(tmp_path: Path) -> None:
    for k in range(1, 11):
        _trial(tmp_path, k)
