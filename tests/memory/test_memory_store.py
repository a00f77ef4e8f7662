"""Memory stores: namespaces, sharing one database, transactions, restarts, many processes,
and the storage operations of the ``MemoryBackend`` protocol (both backends unless named)."""

from __future__ import annotations

import json
import pathlib
import sqlite3
import subprocess
import sys
from typing import Any

import pytest
import sqlite_utils

from flowstate.memory import (
    MemoryBackend,
    MemoryConfigError,
    MemoryStore,
    MemoryStoreError,
    PostgresMemoryStore,
)

from ._helpers import ROOT, run_python
from .conftest import Location


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


def test_two_stores_on_one_file_see_each_other(store: MemoryStore, location: Location) -> None:
    other = location.open()
    reader = other.memory("episodic", "shared")
    assert reader.retrieve("hello") == []  # loads (and caches) the empty snapshot
    store.memory("episodic", "shared").add("hello from the first store")
    assert [r.entry.content for r in reader.retrieve("hello")] == ["hello from the first store"]
    reader.add("hello back")
    assert store.memory("episodic", "shared").count() == 2
    store.memory("episodic", "shared").clear()
    assert reader.count() == 0


def test_file_is_in_wal_mode(sqlite_store: MemoryStore) -> None:
    assert sqlite_store.db.journal_mode == "wal"


def test_every_write_transaction_begins_immediate(sqlite_store: MemoryStore) -> None:
    store = sqlite_store
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


def test_a_write_inside_an_open_transaction_points_to_buffered_mode(
    store: MemoryStore, location: Location
) -> None:
    store.conn.execute(location.begin)
    try:
        with pytest.raises(MemoryStoreError, match=r"FSM202.*buffer.*apply_ops"):
            store.memory("episodic", "a").add("x")
    finally:
        store.conn.execute("ROLLBACK")


def test_store_takes_a_database_and_leaves_it_open(db_path: pathlib.Path) -> None:
    db = sqlite_utils.Database(db_path)
    store = MemoryStore(db)
    store.memory("episodic", "a").add("x")
    store.close()
    assert db.execute("select count(*) from memories").fetchone() == (1,)
    assert db["_sqlite_migrations"].count == 2  # 0001_memories, 0002_revisions
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


def test_entries_survive_a_process_restart(location: Location) -> None:
    run_python(
        """
        import sys
        from flowstate.memory import open_memory_store
        store = open_memory_store(sys.argv[1], schema=sys.argv[2])
        store.memory("episodic", "agent-1").add("the user likes jazz", importance=0.8)
        store.memory("semantic", "agent-1").add("Paris", key="user.city")
        store.memory("working", "agent-1", capacity=2).add("scratch note")
        store.memory("episodic", "agent-2").add("someone else's memory")
        store.close()
        """,
        location.target,
        location.schema,
    )
    out = run_python(
        """
        import json, sys
        from flowstate.memory import open_memory_store
        store = open_memory_store(sys.argv[1], schema=sys.argv[2])
        episodic = store.memory("episodic", "agent-1")
        print(json.dumps({
            "recall": [r.entry.content for r in episodic.retrieve("jazz music", k=5)],
            "importance": episodic.inspect()[0].importance,
            "city": store.memory("semantic", "agent-1").get("user.city").content,
            "working": [e.content for e in store.memory("working", "agent-1").inspect()],
        }))
        """,
        location.target,
        location.schema,
    )
    assert json.loads(out) == {
        "recall": ["the user likes jazz"],
        "importance": 0.8,
        "city": "Paris",
        "working": ["scratch note"],
    }


def test_concurrent_writer_processes_lose_nothing(location: Location) -> None:
    location.open().close()
    code = """
import sys
from flowstate.memory import open_memory_store
store = open_memory_store(sys.argv[1], schema=sys.argv[3])
working = store.memory("working", "crew", capacity=5)
episodic = store.memory("episodic", "crew")
for n in range(40):
    episodic.add(f"writer {sys.argv[2]} event {n}")
    working.add(f"writer {sys.argv[2]} note {n}")
"""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, location.target, str(n), location.schema],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = location.open()
    assert store.counts() == {("crew", "episodic"): 120, ("crew", "working"): 5}


# -- the MemoryBackend protocol's storage operations ----------------------------------------


def test_both_stores_implement_the_protocol(store: MemoryBackend) -> None:
    assert isinstance(store, MemoryBackend)
    assert isinstance(store, (MemoryStore, PostgresMemoryStore))


def test_search_by_vector_ranks_by_cosine_and_checks_the_dimension(store: MemoryBackend) -> None:
    memory = store.memory("episodic", "v")
    tea, coffee = memory.add("green tea at nine"), memory.add("black coffee at noon")
    query = store.embedder.embed(["green tea"])[0]
    found = store.search("v", "episodic", query, k=2)
    assert [s.entry.id for s in found] == [tea.id, coffee.id]
    assert found[0].score > found[1].score
    assert found[0].entry == tea
    assert store.search("v", "episodic", query, k=0) == []
    assert store.search("other", "episodic", query, k=3) == []
    with pytest.raises(MemoryConfigError, match=r"FSM102.*3 values.*dim 256"):
        store.search("v", "episodic", [1.0, 0.0, 0.0], k=1)


def test_search_text_matches_content_case_insensitively_newest_first(
    store: MemoryBackend,
) -> None:
    episodic = store.memory("episodic", "t")
    first = episodic.add("Deploy FAILED on Friday")
    episodic.add("all green")
    second = episodic.add("the deploy failed again")
    store.memory("semantic", "t").add("deploy failed twice this week", key="deploys")
    store.memory("episodic", "elsewhere").add("deploy failed elsewhere")
    assert [e.id for e in store.search_text("t", "deploy failed", kind="episodic")] == [
        second.id,
        first.id,
    ]
    assert len(store.search_text("t", "DEPLOY FAILED")) == 3
    assert len(store.search_text("t", "deploy failed", k=1)) == 1
    # LIKE wildcards in the text are matched literally
    episodic.add("100% done")
    assert [e.content for e in store.search_text("t", "0%")] == ["100% done"]
    assert store.search_text("t", "_") == []
    with pytest.raises(MemoryConfigError, match="non-empty text"):
        store.search_text("t", "")


def test_entries_delete_and_namespaces(store: MemoryBackend) -> None:
    a = store.memory("episodic", "ns-a")
    kept, dropped = a.add("kept"), a.add("dropped")
    store.memory("working", "ns-b").add("scratch")
    assert store.namespaces() == ["ns-a", "ns-b"]
    assert [e.content for e in store.entries("ns-a")] == ["kept", "dropped"]
    assert [e.content for e in store.entries("ns-a", limit=1)] == ["kept"]
    assert store.entries("ns-b", "episodic") == []
    store.delete("ns-b", [kept.id])  # another namespace: nothing happens
    store.delete("ns-a", [dropped.id, "no-such-id"])
    assert [e.id for e in store.entries("ns-a")] == [kept.id]
    assert a.retrieve("dropped", k=5)[0].entry.id == kept.id
    store.memory("working", "ns-b").clear()
    assert store.namespaces() == ["ns-a"]


# -- incremental catch-up: another process's writes, without reloading the namespace --------


def test_a_reader_catches_up_with_another_writer_without_reloading(
    store: Any, location: Location
) -> None:
    writer = location.open()
    reader_memory = store.memory("episodic", "shared")
    writer_memory = writer.memory("episodic", "shared")
    for n in range(50):
        writer_memory.add(f"seed entry {n}")
    assert len(reader_memory.retrieve("seed", k=100)) == 50
    assert store.reloads == 1
    doomed = writer_memory.inspect()[:10]
    for n in range(20):
        writer_memory.add(f"later entry {n}")
        assert reader_memory.retrieve(f"later entry {n}", k=1)[0].entry.content == (
            f"later entry {n}"
        )
    for entry in doomed:
        writer_memory.delete(entry.id)
    facts = writer.memory("semantic", "shared")
    facts.add("v1", key="k")
    facts.add("v2", key="k")
    assert reader_memory.count() == 60
    assert store.memory("semantic", "shared").get("k").content == "v2"
    assert store.reloads == 2  # one full load per (namespace, kind): episodic, semantic
    writer_memory.clear()
    assert reader_memory.count() == 0 and reader_memory.retrieve("seed") == []
    assert store.reloads == 2


def test_a_reader_too_far_behind_reloads_in_full(
    store: Any, location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowstate.memory import _sql

    monkeypatch.setattr(_sql, "PRUNE_EVERY", 4)
    monkeypatch.setattr(_sql, "KEEP_TOMBSTONES", 4)
    working = location.open().memory("working", "w", capacity=2)
    reader = store.memory("working", "w", capacity=2)
    working.add("first")
    assert [e.content for e in reader.inspect()] == ["first"]
    for n in range(12):  # every add past capacity leaves a tombstone; old ones are pruned
        working.add(f"note {n}")
    assert [e.content for e in reader.inspect()] == ["note 10", "note 11"]
    assert store.reloads == 2


def test_postgres_reads_survive_a_dropped_connection(location: Location) -> None:
    if location.backend != "postgres":
        pytest.skip("a server dropping the connection is a Postgres matter")
    store = location.open()
    memory = store.memory("episodic", "n")
    memory.add("before the drop")
    (pid,) = store.conn.execute("SELECT pg_backend_pid()").fetchone()
    killer = location.connect()
    killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    killer.close()
    assert [r.entry.content for r in memory.retrieve("drop", k=1)] == ["before the drop"]
    (pid,) = store.conn.execute("SELECT pg_backend_pid()").fetchone()
    killer = location.connect()
    killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    killer.close()
    memory.add("after the drop")  # a write whose BEGIN finds the connection gone reconnects
    assert store.counts() == {("n", "episodic"): 2}


def test_another_process_writes_are_seen_without_a_reload(store: Any, location: Location) -> None:
    """Issue 21 item 3 with real processes: a long-lived reader catches up with what another
    process wrote (rows and removals) and never reloads the namespace."""
    episodic = store.memory("episodic", "fleet")
    first = episodic.add("written by the reader")
    assert [r.entry.id for r in episodic.retrieve("reader", k=5)] == [first.id]
    run_python(
        """
        import sys
        from flowstate.memory import open_memory_store
        store = open_memory_store(sys.argv[1], schema=sys.argv[2])
        memory = store.memory("episodic", "fleet")
        for n in range(5):
            memory.add(f"written by the other process {n}")
        memory.delete(sys.argv[3])
        store.close()
        """,
        location.target,
        location.schema,
        first.id,
    )
    contents = sorted(r.entry.content for r in episodic.retrieve("written", k=10))
    assert contents == [f"written by the other process {n}" for n in range(5)]
    assert store.reloads == 1
