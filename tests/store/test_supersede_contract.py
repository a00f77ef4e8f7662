"""``supersede_writes`` on every store (issue 16 item 5): a step re-run takes the step's
write rows out, keeps each as an ``attempts`` row (negative attempt numbers, one per
re-run), and is fenced like every write."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowstate.checkpoints import LeaseStore
from flowstate.errors import LeaseLost

from .conftest import Rec, StoreFactory

PREFIX = "superseded by resume(rerun_step=True): "


def test_supersede_moves_the_steps_writes_to_attempts(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r"), rec.step("r", 0))
    store.commit("r", writes=[rec.write("r", 0, "a")], step=rec.step("r", 1))
    store.commit("r", writes=[rec.write("r", 1, "x", seq=0, update='{"n":7}')])
    store.commit("r", writes=[rec.write("r", 1, "y", seq=1, usage='{"input_tokens":3}')])
    store.record_attempt(rec.attempt("r", 1, "x", 1))
    assert store.supersede_writes("r", 1) == 2
    assert [(w.step, w.task_path) for w in store.writes("r")] == [(0, "a")]
    rows = [a for a in store.attempts("r") if a.attempt < 0]
    assert [(a.step, a.task_path, a.attempt) for a in rows] == [(1, "x", -1), (1, "y", -1)]
    kept = json.loads(rows[0].error.removeprefix(PREFIX))
    assert rows[0].error.startswith(PREFIX) and kept["update"] == '{"n":7}'
    assert json.loads(rows[1].error.removeprefix(PREFIX))["usage"] == '{"input_tokens":3}'
    assert store.visit_counts("r") == {"a": 1}
    # the re-run commits the same keys again; a second re-run gets -2, the first stays
    store.commit("r", writes=[rec.write("r", 1, "x", update='{"n":8}')])
    assert store.supersede_writes("r", 1) == 1
    assert [a.attempt for a in store.attempts("r") if a.task_path == "x"] == [-2, -1, 1]
    assert store.supersede_writes("r", 1) == 0  # nothing committed: nothing to move
    assert store.supersede_writes("r", 5) == 0


def test_supersede_is_fenced(store_factory: StoreFactory, rec: Rec) -> None:
    a = store_factory("s")
    if not isinstance(a, LeaseStore):
        pytest.skip("store keeps no leases")
    b = store_factory("s")
    a.create_run(rec.run("r"), rec.step("r", 0), owner="o1", ttl=0.01)
    a.commit("r", writes=[rec.write("r", 0, "a")])
    import time

    time.sleep(0.05)
    b.acquire("r", "o2", 30.0)
    with pytest.raises(LeaseLost):
        a.supersede_writes("r", 0)
    assert [w.task_path for w in b.writes("r")] == ["a"]
    assert b.attempts("r") == []
