"""Thread columns and reads on every backend: one caller per turn, listing by thread,
hashes of runs on no thread unchanged by m301, deletion of threads by prune."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowstate.checkpoints import SQLiteStore, prune, row_hash
from flowstate.errors import RunStateError, TurnConflict

from .conftest import Rec


def _turn(rec: Rec, run_id: str, thread: str, turn: int, **kw: Any) -> Any:
    return rec.run(run_id, **kw).model_copy(update={"thread_id": thread, "turn": turn})


def test_turns_are_listed_by_thread_and_each_turn_is_taken_once(store: Any, rec: Rec) -> None:
    store.create_run(_turn(rec, "a1", "alpha", 1), rec.step("a1", 0))
    store.create_run(_turn(rec, "b1", "beta", 1), rec.step("b1", 0))
    store.create_run(_turn(rec, "a2", "alpha", 2), rec.step("a2", 0))
    store.create_run(rec.run("plain"), rec.step("plain", 0))
    with pytest.raises(TurnConflict) as e:
        store.create_run(_turn(rec, "a2bis", "alpha", 2), rec.step("a2bis", 0))
    assert "turn 2 of thread 'alpha'" in str(e.value) and e.value.code == "FS226"
    assert store.find_run("a2bis") is None  # nothing of the refused turn was kept
    assert store.get_step("a2bis", 0) is None
    with pytest.raises(RunStateError):  # a duplicate run id is still refused as before
        store.create_run(rec.run("plain"), rec.step("plain", 0))
    assert [(r.id, r.turn) for r in store.thread_runs("alpha")] == [("a1", 1), ("a2", 2)]
    assert store.thread_runs("nope") == []
    got = store.get_run("a2")
    assert (got.thread_id, got.turn) == ("alpha", 2)
    assert store.get_run("plain").thread_id is None
    threads = store.threads()
    assert [t.thread_id for t in threads] == ["alpha", "beta"]  # newest latest turn first
    assert threads[0].turns == 2 and threads[0].last_at >= threads[0].created_at
    assert [t.thread_id for t in store.threads(limit=1)] == ["alpha"]
    assert [t.thread_id for t in store.threads(before=threads[0].last_at)] == ["beta"]


def test_a_run_on_no_thread_keeps_the_hash_it_had_before_m301(tmp_path: Path, rec: Rec) -> None:
    store = SQLiteStore(tmp_path / "h.db")
    run = rec.run("old")
    store.create_run(run, rec.step("old", 0))
    before = (
        "id",
        "graph",
        "fingerprint",
        "graph_doc",
        "input",
        "parent_id",
        "parent_step",
        "config",
        "created_at",
    )
    with sqlite3.connect(tmp_path / "h.db") as c:
        (stored,) = c.execute("SELECT hash FROM runs WHERE id = 'old'").fetchone()
    assert stored == row_hash(*(getattr(run, k) for k in before))
    # and a turn's thread columns are covered by its hash: a forged turn number is caught
    store.create_run(_turn(rec, "t1", "th", 1), rec.step("t1", 0))
    store.close()
    with sqlite3.connect(tmp_path / "h.db") as c:
        c.execute("UPDATE runs SET turn = 7 WHERE id = 't1'")
    from flowstate.errors import CorruptRowError

    with pytest.raises(CorruptRowError):
        SQLiteStore(tmp_path / "h.db").get_run("t1")


def _thread(store: Any, rec: Rec, name: str, created: list[float]) -> list[str]:
    ids = []
    for i, at in enumerate(created, 1):
        rid = f"{name}{i}"
        run = _turn(rec, rid, name, i, status="completed").model_copy(
            update={"created_at": at, "updated_at": at}
        )
        store.create_run(run, rec.step(rid, 0))
        ids.append(rid)
    return ids


def test_prune_keeps_each_threads_latest_turn_or_deletes_whole_threads(
    store: Any, rec: Rec
) -> None:
    now = 1_000_000.0
    day = 86400.0
    old = _thread(store, rec, "old", [now - 9 * day, now - 8 * day])
    mixed = _thread(store, rec, "mix", [now - 9 * day, now - 8 * day, now - 1])
    # by age: old turns go, but every thread keeps its latest turn (it continues from it)
    gone = prune(store, older_than=7 * day, now=now, dry_run=True)
    assert sorted(gone) == sorted([old[0], mixed[0], mixed[1]])
    assert store.find_run(old[0]) is not None  # a dry run deletes nothing
    # one thread only
    assert prune(store, older_than=7 * day, now=now, thread_id="mix") == mixed[:2]
    assert [r.id for r in store.thread_runs("mix")] == [mixed[2]]
    assert [r.id for r in store.thread_runs("old")] == old
    # whole threads whose latest turn is older than the age: all their turns
    assert prune(store, older_than=7 * day, now=now, whole_threads=True) == old
    assert store.thread_runs("old") == []
    assert [t.thread_id for t in store.threads()] == ["mix"]
    # a whole thread by id, whatever its age
    assert prune(store, older_than=0, now=now, thread_id="mix", whole_threads=True) == [mixed[2]]
    assert store.threads() == []


def test_a_database_from_before_m301_opens_and_its_runs_go_on(tmp_path: Path) -> None:
    """A file made by the previous schema (migrations up to m004): m301 applies on open,
    its runs keep their hashes, and a run of it is read back whole."""
    import sqlite_utils

    from flowstate.checkpoints._sqlite_schema import migrations

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m301_threads")
    assert "thread_id" not in db["runs"].columns_dict  # type: ignore[union-attr]
    cols = (
        "id",
        "graph",
        "fingerprint",
        "graph_doc",
        "input",
        "parent_id",
        "parent_step",
        "config",
        "created_at",
    )
    row = {
        "id": "r",
        "graph": "g",
        "fingerprint": "f",
        "graph_doc": "{}",
        "input": "{}",
        "parent_id": None,
        "parent_step": None,
        "config": "{}",
        "created_at": 1.0,
    }
    db["runs"].insert(  # type: ignore[union-attr]
        {
            **row,
            "status": "paused",
            "head_step": 0,
            "error": None,
            "updated_at": 2.0,
            "hash": row_hash(*(row[c] for c in cols)),
            "mhash": row_hash("paused", 0, None, 2.0),
        }
    )
    db.close()
    store = SQLiteStore(path)
    run = store.get_run("r")
    assert (run.status, run.thread_id, run.turn) == ("paused", None, None)
    assert store.threads() == [] and store.list_runs()[0].id == "r"
