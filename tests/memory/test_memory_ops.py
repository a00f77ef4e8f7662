"""The engine seam: buffered ops, apply_ops inside the caller's transaction, idempotence."""

from __future__ import annotations

import pathlib
import sqlite3
import uuid

import numpy as np
import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flowstate.memory import (
    ClearOp,
    DeleteOp,
    MemoryEntry,
    MemoryKind,
    MemoryOp,
    MemoryStore,
    MemoryStoreError,
    TrimOp,
    UpsertOp,
    apply_ops,
    dump_ops,
    ensure_schema,
    load_ops,
)
from flowstate.memory._snapshot import Snapshot

from .conftest import Location

COLUMNS = "id, namespace, kind, key, content, timestamp, importance, metadata, embedding, seq"


def rows(conn: sqlite3.Connection, table: str = "memories") -> list[tuple[object, ...]]:
    """The stored entries (without ``rev``, the bookkeeping revision of the last write)."""
    return [
        tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
        for row in conn.execute(f"SELECT {COLUMNS} FROM {table} ORDER BY id").fetchall()
    ]


def engine_connection(location: Location) -> sqlite3.Connection:
    """What the engine holds: its own connection, managing transactions by hand."""
    conn = location.connect()
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {location.table('checkpoints')} "
        "(node TEXT PRIMARY KEY, state TEXT)"
    )
    return conn


def buffered_node_ops(store: MemoryStore) -> list[MemoryOp]:
    ops: list[MemoryOp] = []
    store.memory("episodic", "run-1", buffer=ops).add("the node saw a red light")
    store.memory("working", "run-1", buffer=ops, capacity=1).add("scratch")
    store.memory("semantic", "run-1", buffer=ops).add("red", key="light.colour")
    return ops


def test_buffered_writes_are_ops_and_reads_see_them(store: MemoryStore) -> None:
    ops: list[MemoryOp] = []
    episodic = store.memory("episodic", "run-1", buffer=ops)
    working = store.memory("working", "run-1", buffer=ops, capacity=2)
    entry = episodic.add("buffered event")
    for n in range(3):
        working.add(f"note {n}", importance=0.1 * (n + 1))
    assert store.counts() == {}  # nothing committed
    assert [type(op).__name__ for op in ops] == ["UpsertOp"] + ["UpsertOp", "TrimOp"] * 3
    assert [r.entry.id for r in episodic.retrieve("event")] == [entry.id]
    assert [e.content for e in working.inspect()] == ["note 1", "note 2"]
    # An unbuffered memory on the same namespace sees only committed rows.
    assert store.memory("episodic", "run-1").retrieve("event") == []
    episodic.delete(entry.id)
    assert episodic.retrieve("event") == [] and store.counts() == {}


def test_apply_ops_commits_with_the_callers_transaction(
    store: MemoryStore, location: Location
) -> None:
    ops = buffered_node_ops(store)
    conn = engine_connection(location)
    statements: list[str] = []
    conn.execute(location.begin)
    conn.execute(f"INSERT INTO {location.table('checkpoints')} VALUES ('node-a', '{{}}')")
    if location.backend == "sqlite":
        conn.set_trace_callback(statements.append)
    store.apply_ops(conn, ops)
    if location.backend == "sqlite":
        conn.set_trace_callback(None)
    assert store.dialect.in_transaction(conn)
    assert not any(s.split()[0].upper() in {"BEGIN", "COMMIT", "ROLLBACK"} for s in statements)
    assert store.counts() == {}  # not visible to others before the caller commits
    conn.execute("COMMIT")
    assert store.counts() == {
        ("run-1", "episodic"): 1,
        ("run-1", "semantic"): 1,
        ("run-1", "working"): 1,
    }
    assert store.memory("semantic", "run-1").get("light.colour") is not None
    conn.close()


def test_rollback_leaves_nothing(store: MemoryStore, location: Location) -> None:
    ops = buffered_node_ops(store)
    conn = engine_connection(location)
    conn.execute(location.begin)
    conn.execute(f"INSERT INTO {location.table('checkpoints')} VALUES ('node-a', '{{}}')")
    store.apply_ops(conn, ops)
    conn.execute("ROLLBACK")
    assert store.counts() == {}
    assert conn.execute(f"SELECT count(*) FROM {location.table('checkpoints')}").fetchone() == (0,)
    conn.close()


def test_apply_ops_refuses_to_run_outside_a_transaction(
    store: MemoryStore, location: Location
) -> None:
    conn = engine_connection(location)
    with pytest.raises(MemoryStoreError, match=rf"FSM202.*{location.begin}"):
        store.apply_ops(conn, buffered_node_ops(store))
    assert store.counts() == {}
    store.apply_ops(conn, [])  # nothing to do is fine anywhere
    conn.close()


def test_re_applying_the_same_ops_is_idempotent(store: MemoryStore, location: Location) -> None:
    ops = buffered_node_ops(store)
    conn = engine_connection(location)
    table = location.table("memories")
    committed = []
    for _ in range(2):  # e.g. a crash after commit, then recovery re-applies the journal
        conn.execute(location.begin)
        store.apply_ops(conn, ops)
        conn.execute("COMMIT")
        committed.append(rows(conn, table))
    first = committed[0]
    assert committed[1] == first and len(first) == 3
    store.commit(ops)
    assert rows(conn, table) == first
    conn.close()


def test_ops_round_trip_through_json(store: MemoryStore, location: Location) -> None:
    ops = buffered_node_ops(store)
    ops.append(DeleteOp(namespace="run-1", ids=["nope"]))
    ops.append(ClearOp(namespace="other"))
    text = dump_ops(ops)
    loaded = load_ops(text)
    assert loaded == ops
    import json

    assert load_ops(json.loads(text)) == ops
    store.commit(loaded)
    table = location.table("memories")
    committed = rows(store.conn, table)
    store.memory("episodic", "run-1").clear()
    store.commit(ops)
    assert rows(store.conn, table) != [] and len(rows(store.conn, table)) == len(committed)


def test_upsert_op_embedding_forms() -> None:
    entry = MemoryEntry(content="x", kind="episodic", namespace="n")
    from_floats = UpsertOp(entry=entry, seq=1, embedding=[0.5, -1.0, 0.25], dim=3)  # type: ignore[arg-type]
    assert from_floats.embedding is not None
    assert from_floats.vector().tolist() == [0.5, -1.0, 0.25]  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="dim is 4 but the embedding holds 3"):
        UpsertOp(entry=entry, seq=1, embedding=[0.5, -1.0, 0.25], dim=4)  # type: ignore[arg-type]


def test_missing_schema_is_named(tmp_path: pathlib.Path) -> None:
    conn = sqlite3.connect(tmp_path / "bare.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    op = ClearOp(namespace="n")
    with pytest.raises(MemoryStoreError, match=r"FSM201.*ensure_schema"):
        apply_ops(conn, [op])
    conn.execute("ROLLBACK")
    conn.close()


def test_ensure_schema_inside_the_callers_transaction(tmp_path: pathlib.Path) -> None:
    db = sqlite_utils.Database(tmp_path / "engine.db")
    db.conn.execute("BEGIN IMMEDIATE")
    ensure_schema(db)
    assert db.conn.in_transaction  # left for the caller to end
    db.conn.execute("ROLLBACK")
    assert "memories" not in db.table_names()
    ensure_schema(db.conn)
    ensure_schema(db)  # idempotent
    assert "memories" in db.table_names()
    db.close()


# -- the SQL and the in-process snapshot apply every op identically ---------------------

IDS = ["a", "b", "c", "d"]
NAMESPACES = ["n1", "n2"]
KINDS: list[MemoryKind] = ["episodic", "semantic"]

upserts = st.builds(
    lambda entry_id, ns, kind, key, imp, ts, seq, vec: UpsertOp(
        entry=MemoryEntry(
            id=entry_id,
            namespace=ns,
            kind=kind,
            key=key,
            content=f"{entry_id}@{ts}",
            importance=imp,
            timestamp=ts,
        ),
        seq=seq,
        embedding=vec,
        dim=len(vec),
        embedder="test",
    ),
    st.sampled_from(IDS),
    st.sampled_from(NAMESPACES),
    st.sampled_from(KINDS),
    st.sampled_from([None, None, "k1", "k2"]),
    st.sampled_from([0.0, 0.5, 1.0]),
    st.sampled_from([1.0, 2.0, 3.0]),
    st.integers(min_value=1, max_value=5),
    st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0]), min_size=2, max_size=2),
)
other_ops = st.one_of(
    st.builds(
        DeleteOp,
        namespace=st.sampled_from(NAMESPACES),
        ids=st.lists(st.sampled_from(IDS), max_size=3),
    ),
    st.builds(
        ClearOp,
        namespace=st.sampled_from(NAMESPACES),
        kind=st.sampled_from([None, *KINDS]),
    ),
    st.builds(
        TrimOp,
        namespace=st.sampled_from(NAMESPACES),
        kind=st.sampled_from(KINDS),
        capacity=st.integers(min_value=0, max_value=3),
    ),
)


def live_rows(snap: Snapshot) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for i in snap.live().tolist():
        vector = tuple(snap.emb[i].tolist()) if snap.emb is not None else ()
        out[snap.ids[i]] = (
            float(snap.ts[i]),
            int(snap.seq[i]),
            float(snap.imp[i]),
            snap.id_to_key.get(snap.ids[i]),
            vector,
        )
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(upserts, upserts, other_ops), max_size=12))
def test_property_sql_and_snapshot_agree(ops: list[MemoryOp]) -> None:
    db = sqlite_utils.Database(memory=True)
    ensure_schema(db)
    db.conn.execute("BEGIN IMMEDIATE")
    apply_ops(db.conn, ops)
    db.conn.execute("COMMIT")
    for ns in NAMESPACES:
        for kind in KINDS:
            from_sql = Snapshot.load(db.conn, ns, kind)
            in_process = Snapshot(ns, kind)
            in_process.apply_all(ops)
            assert live_rows(in_process) == live_rows(from_sql), (ns, kind)
            assert in_process.key_to_id == from_sql.key_to_id
            assert len(in_process) == len(from_sql)


@settings(max_examples=60, deadline=None)
@given(
    committed=st.lists(st.one_of(upserts, other_ops), max_size=8),
    buffered=st.lists(st.one_of(upserts, other_ops), max_size=8),
)
def test_property_overlay_equals_committing(
    committed: list[MemoryOp], buffered: list[MemoryOp]
) -> None:
    """A buffered read (cached snapshot + ops) equals a read after committing the ops."""
    store = MemoryStore(sqlite_utils.Database(memory=True))
    store.commit(committed)
    overlays = {}
    for ns in NAMESPACES:
        for kind in KINDS:
            snap = store._snapshot(ns, kind).copy()
            snap.apply_relevant(buffered)
            overlays[(ns, kind)] = live_rows(snap)
    store.commit(buffered)  # also exercises the incremental cache update
    for (ns, kind), expected in overlays.items():
        assert live_rows(store._snapshot(ns, kind)) == expected
        fresh = Snapshot.load(store.conn, ns, kind)
        assert live_rows(fresh) == expected
    store.close()


def test_cached_snapshot_compacts_after_many_deletes(store: MemoryStore) -> None:
    memory = store.memory("episodic", "n")
    ids = [memory.add(f"entry {n}").id for n in range(200)]
    memory.retrieve("entry", k=1)  # load the cache
    for entry_id in ids[:150]:
        memory.delete(entry_id)
    snap = store._snapshot("n", "episodic")
    assert len(snap) == 50
    assert snap.n < 200  # removed slots were dropped at least once
    assert int(np.count_nonzero(snap.alive[: snap.n])) == 50
    assert {r.entry.id for r in memory.retrieve("entry", k=100)} == set(ids[150:])


# -- incremental catch-up equals a fresh load, whatever another writer did ------------------


def _scoped(ops: list[MemoryOp], prefix: str) -> list[MemoryOp]:
    """The ops with namespaces and ids prefixed, so examples sharing a database are apart."""
    out: list[MemoryOp] = []
    for op in ops:
        if isinstance(op, UpsertOp):
            entry = op.entry.model_copy(
                update={"id": prefix + op.entry.id, "namespace": prefix + op.entry.namespace}
            )
            out.append(op.model_copy(update={"entry": entry}))
        elif isinstance(op, DeleteOp):
            out.append(DeleteOp(namespace=prefix + op.namespace, ids=[prefix + i for i in op.ids]))
        else:
            out.append(op.model_copy(update={"namespace": prefix + op.namespace}))
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.lists(st.one_of(upserts, upserts, other_ops), max_size=6), max_size=5))
def test_property_catching_up_equals_a_fresh_load(
    location: Location, batches: list[list[MemoryOp]]
) -> None:
    """A reader that cached every (namespace, kind) follows another store's commits by
    catching up (no reload), and ends exactly where a fresh load of the database is."""
    from flowstate.memory._sql import snapshot_rows

    prefix = uuid.uuid4().hex[:8] + ":"
    writer, reader = location.open(), location.open()
    keys: list[tuple[str, MemoryKind]] = [
        (prefix + ns, kind) for ns in NAMESPACES for kind in KINDS
    ]
    for ns, kind in keys:
        reader._snapshot(ns, kind)
    for batch in batches:
        writer.commit(_scoped(batch, prefix))
        for ns, kind in keys:
            caught_up = reader._snapshot(ns, kind)
            fresh = Snapshot.from_rows(
                ns, kind, snapshot_rows(writer.dialect, writer._connection(), ns, kind)
            )
            assert live_rows(caught_up) == live_rows(fresh), (ns, kind)
            assert caught_up.key_to_id == fresh.key_to_id
    assert reader.reloads == len(keys)
    writer.close()
    reader.close()


def test_opposite_namespace_orders_do_not_deadlock(
    location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engine transactions write namespaces a and b in opposite orders at the same time
    (ops slowed down so they interleave): both commit, on Postgres thanks to the sorted
    head locks, on SQLite because writers are serialised anyway."""
    import threading
    import time

    from flowstate.memory import _sql

    store = location.open()
    plans: list[list[MemoryOp]] = []
    for order in (["a", "b"], ["b", "a"]):
        ops: list[MemoryOp] = []
        for ns in order:
            store.memory("episodic", ns, buffer=ops).add(f"{ns} from {order}")
        plans.append(ops)
    slow_apply = _sql.OpWriter.apply

    def apply(self: _sql.OpWriter, op: MemoryOp) -> None:
        time.sleep(0.1)
        slow_apply(self, op)

    monkeypatch.setattr(_sql.OpWriter, "apply", apply)
    errors: list[BaseException] = []

    def engine(ops: list[MemoryOp]) -> None:
        conn = location.connect()
        if location.backend == "sqlite":
            conn.execute("PRAGMA busy_timeout = 10000")
        try:
            conn.execute(location.begin)
            store.apply_ops(conn, ops)
            conn.execute("COMMIT")
        except BaseException as err:
            errors.append(err)
        finally:
            conn.close()

    threads = [threading.Thread(target=engine, args=(ops,)) for ops in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert store.counts() == {("a", "episodic"): 2, ("b", "episodic"): 2}
