"""Exhaustive crash-point sweep, in process (RELIABILITY.md R1, the TH3 pattern).

At the k-th instrumented crash point the "process dies": a SimulatedCrash unwinds the
run, the connection is closed without committing (SQLite rolls the open transaction back,
as after a kill), and a new store and graph resume the run. k runs 1, 2, … until a run
completes without reaching k. The real-SIGKILL version of the same sweep is in
test_crash_process.py (slow tier).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flowstate import _crashpoints
from flowstate.checkpoints import SQLiteStore
from tests.conftest import SimulatedCrash
from tests.refgraphs import GRAPHS


def _run_with_crash_at(tmp: Path, graph: str, k: int) -> tuple[bool, set[str]]:
    db, sink = tmp / f"{graph}-{k}.db", tmp / f"{graph}-{k}-sink.db"
    reached: list[str] = []
    count = 0

    def hook(name: str) -> None:
        nonlocal count
        count += 1
        reached.append(name)
        if count >= k:  # dead from the k-th point on: in-flight activations die too
            raise SimulatedCrash(name)

    store = SQLiteStore(db)
    app = GRAPHS[graph](str(sink), 0.0).compile(store=store)
    _crashpoints.set_hook(hook)
    crashed = False
    try:
        app.run_sync({}, run_id="r")
    except SimulatedCrash:
        crashed = True
    finally:
        _crashpoints.set_hook(None)
    store.conn.close()  # whatever was not committed is gone, as after kill -9
    if crashed:
        app2 = GRAPHS[graph](str(sink), 0.0).compile(store=str(db))
        if app2.store.find_run("r") is None:
            r = app2.run_sync({}, run_id="r")
        else:
            r = app2.resume_sync("r")
        assert r.status == "completed"
        _check(db, sink, graph)
    return crashed, set(reached)


_golden_cache: dict[str, dict] = {}
WIDTH = {"linear4": 1, "linear20": 1, "fanout_join": 5, "loop": 1}
"""The most activations that can be in flight at once in each reference graph."""


def _check(db: Path, sink: Path, graph: str) -> None:
    if graph not in _golden_cache:
        import tempfile

        d = Path(tempfile.mkdtemp())
        app = GRAPHS[graph](str(d / "s.db"), 0.0).compile(store=str(d / "g.db"))
        _golden_cache[graph] = app.run_sync({}).state.model_dump()
    golden = _golden_cache[graph]
    app = GRAPHS[graph](str(sink), 0.0).compile(store=str(db))
    assert app.store.integrity_check() == "ok"
    assert app.get_state("r").model_dump() == golden
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM writes").fetchone()[0] == len(golden["log"])
        assert c.execute("SELECT count(*) FROM effects").fetchone()[0] == len(golden["log"])
    with sqlite3.connect(sink) as c:
        keys = c.execute("SELECT key, count(*) FROM deliveries GROUP BY key").fetchall()
    assert len(keys) == len(golden["log"])
    # at-least-once: only activations in flight at the crash may deliver twice, and the
    # duplicate carries the same idempotency key (the grouping key above)
    assert sum(n - 1 for _, n in keys) <= WIDTH[graph]


@pytest.mark.parametrize("graph", ["linear4", "fanout_join", "loop"])
def test_every_crash_point(fast_tmp, graph):
    k, points = 1, set()
    while True:
        crashed, reached = _run_with_crash_at(fast_tmp, graph, k)
        points |= reached
        if not crashed:
            break
        k += 1
    assert points == set(_crashpoints.POINTS), points
    assert k > 20
