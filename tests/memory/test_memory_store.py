"""MemoryStore: namespaces, sharing one file, BEGIN IMMEDIATE, restarts, many processes."""

from __future__ import annotations

import json
import pathlib
import sqlite3
import subprocess
import sys

import pytest
import sqlite_utils

from flowstate.memory import MemoryConfigError, MemoryStore, MemoryStoreError

from ._helpers import ROOT, run_python


def test_namespaces_isolate_entries(store: MemoryStore) -> None:
    ada = store.memory("episodic", "ada")
    bob = store.memory("episodic", "bob")
    ada.add("ada's secret plan")
    bob.add("bob's grocery list")
    assert [r.entry.content for r in ada.retrieve("secret plan grocery list", k=5)] == [
        "ada's secret plan"
    ]
    assert [e.content for e in bob.inspect()] == ["bob's grocery list"]
    bob.clear()
    assert ada.count() == 1 and bob.count() == 0


def test_two_stores_on_one_file_see_each_other(store: MemoryStore, db_path: pathlib.Path) -> None:
    other = MemoryStore(db_path)
    reader = other.memory("episodic", "shared")
    assert reader.retrieve("hello") == []  # loads (and caches) the empty snapshot
    store.memory("episodic", "shared").add("hello from the first store")
    assert [r.entry.content for r in reader.retrieve("hello")] == ["hello from the first store"]
    reader.add("hello back")
    assert store.memory("episodic", "shared").count() == 2
    store.memory("episodic", "shared").clear()
    assert reader.count() == 0
    other.close()


def test_file_is_in_wal_mode(store: MemoryStore) -> None:
    assert store.db.journal_mode == "wal"


def test_every_write_transaction_begins_immediate(store: MemoryStore) -> None:
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    store.memory("working", "a", capacity=1).add("w1")
    store.memory("working", "a", capacity=1).add("w2")
    episodic = store.memory("episodic", "a")
    entry = episodic.add("e")
    episodic.delete(entry.id)
    facts = store.memory("semantic", "a")
    facts.add("v1", key="k")
    facts.add("v2", key="k")
    facts.clear()
    store.conn.set_trace_callback(None)

    begins = [s for s in statements if s.upper().startswith("BEGIN")]
    assert begins and all(s == "BEGIN IMMEDIATE" for s in begins)
    open_txn = False
    for statement in statements:
        word = statement.split()[0].upper()
        if word == "BEGIN":
            open_txn = True
        elif word in {"COMMIT", "ROLLBACK"}:
            open_txn = False
        elif word in {"INSERT", "DELETE", "UPDATE", "REPLACE"}:
            assert open_txn, f"write outside a BEGIN IMMEDIATE transaction: {statement}"


def test_a_write_inside_an_open_transaction_points_to_buffered_mode(store: MemoryStore) -> None:
    store.conn.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(MemoryStoreError, match=r"FSM202.*buffer=.*apply_ops"):
            store.memory("episodic", "a").add("x")
    finally:
        store.conn.execute("ROLLBACK")


def test_store_takes_a_database_and_leaves_it_open(db_path: pathlib.Path) -> None:
    db = sqlite_utils.Database(db_path)
    store = MemoryStore(db)
    store.memory("episodic", "a").add("x")
    store.close()
    assert db.execute("select count(*) from memories").fetchone() == (1,)
    assert db["_sqlite_migrations"].count == 1
    db.close()


def test_store_rejects_other_arguments() -> None:
    with pytest.raises(MemoryConfigError, match=r"path or a sqlite_utils.Database"):
        MemoryStore(sqlite3.connect(":memory:"))  # type: ignore[arg-type]


def test_inspect_and_counts_show_everything(store: MemoryStore) -> None:
    store.memory("episodic", "a").add("one")
    store.memory("semantic", "b").add("two", key="k")
    assert [(e.namespace, e.kind, e.content) for e in store.inspect()] == [
        ("a", "episodic", "one"),
        ("b", "semantic", "two"),
    ]
    assert [e.content for e in store.inspect(namespace="b")] == ["two"]
    assert store.inspect(kind="working") == []
    assert store.counts() == {("a", "episodic"): 1, ("b", "semantic"): 1}


def test_entries_survive_a_process_restart(db_path: pathlib.Path) -> None:
    run_python(
        """
        import sys
        from flowstate.memory import MemoryStore
        store = MemoryStore(sys.argv[1])
        store.memory("episodic", "agent-1").add("the user likes jazz", importance=0.8)
        store.memory("semantic", "agent-1").add("Paris", key="user.city")
        store.memory("working", "agent-1", capacity=2).add("scratch note")
        store.memory("episodic", "agent-2").add("someone else's memory")
        store.close()
        """,
        str(db_path),
    )
    out = run_python(
        """
        import json, sys
        from flowstate.memory import MemoryStore
        store = MemoryStore(sys.argv[1])
        episodic = store.memory("episodic", "agent-1")
        print(json.dumps({
            "recall": [r.entry.content for r in episodic.retrieve("jazz music", k=5)],
            "importance": episodic.inspect()[0].importance,
            "city": store.memory("semantic", "agent-1").get("user.city").content,
            "working": [e.content for e in store.memory("working", "agent-1").inspect()],
        }))
        """,
        str(db_path),
    )
    assert json.loads(out) == {
        "recall": ["the user likes jazz"],
        "importance": 0.8,
        "city": "Paris",
        "working": ["scratch note"],
    }


def test_concurrent_writer_processes_lose_nothing(db_path: pathlib.Path) -> None:
    MemoryStore(db_path).close()
    code = """
import sys
from flowstate.memory import MemoryStore
store = MemoryStore(sys.argv[1])
working = store.memory("working", "crew", capacity=5)
episodic = store.memory("episodic", "crew")
for n in range(40):
    episodic.add(f"writer {sys.argv[2]} event {n}")
    working.add(f"writer {sys.argv[2]} note {n}")
"""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db_path), str(n)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with MemoryStore(db_path) as store:
        assert store.counts() == {("crew", "episodic"): 120, ("crew", "working"): 5}
