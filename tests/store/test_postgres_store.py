"""PostgresStore mechanisms that the backend-neutral contract (test_contract.py) cannot see.

The contract suite runs against Postgres through ``STORE_BACKENDS``; this file pins what is
Postgres-specific: versioned migrations under an advisory lock (concurrent openers do not
race, a newer schema is refused), payloads kept as the exact text given (the row hash is
over that text), tampering caught by the hashes and strict validation (G7), one
transaction per write operation and no transaction left open by reads (G1), G4 across two
connections, identifier allow-listing, a dropped connection replaced transparently, typed
errors for an unreachable server or a closed store, and byte-for-byte parity of every
reader with SQLiteStore on the same operations.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from flowstate.checkpoints import RunRecord, SQLiteStore
from flowstate.checkpoints._postgres import MIGRATIONS, PostgresStore
from flowstate.errors import CorruptRowError, RunNotFound, StoreError, StoreIOError

from .conftest import Rec, pg_schema, require_postgres
from .test_contract import dump, populate

PgFactory = Callable[..., PostgresStore]


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PgFactory]:
    """``pg(name="s", **kw)``: a PostgresStore on a schema of this test (dropped after)."""
    dsn = require_postgres()
    opened: list[PostgresStore] = []

    def make(name: str = "s", **kw: Any) -> PostgresStore:
        s = PostgresStore(dsn, schema=pg_schema(tmp_path, name), **kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    """A separate connection, for looking at and tampering with the stored rows."""
    with psycopg.connect(require_postgres(), autocommit=True) as c:
        yield c


def _exec(c: psycopg.Connection[Any], store: PostgresStore, template: str, *args: Any) -> Any:
    """Run ``template`` with ``{t}`` the qualified table named by the first argument."""
    table, params = args[0], list(args[1:])
    q = sql.SQL(template).format(t=sql.Identifier(store.schema, table))  # type: ignore[arg-type]
    return c.execute(q, params)


# -- migrations ---------------------------------------------------------------------------


def test_migrations_are_recorded_once_and_reopening_is_a_no_op(
    pg: PgFactory, admin: psycopg.Connection[Any]
) -> None:
    s = pg()
    s2 = pg()
    rows = _exec(admin, s, 'SELECT "name" FROM {t} ORDER BY "name"', "migrations").fetchall()
    assert [r[0] for r in rows] == list(MIGRATIONS)
    assert s2.table_sizes()["migrations"] == len(MIGRATIONS)
    tables = {
        r[0]
        for r in admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [s.schema])
    }
    assert tables == {
        "migrations",
        "runs",
        "steps",
        "writes",
        "effects",
        "interrupts",
        "attempts",
        "signals",
        "blobs",
        "meta",
        "schedules",
        "firings",
        "events",
        "queue",
        "workers",
        "flow_limits",
    }


def test_a_schema_from_before_leases_is_migrated_on_open(
    pg: PgFactory, admin: psycopg.Connection[Any]
) -> None:
    """A schema with only ``m001_initial`` (a run in it) gains the lease columns when
    opened by this version; the old run is intact, unleased and can be acquired."""
    assert MIGRATIONS[:2] == ("m001_initial", "m002_leases")
    rec = Rec()
    s = pg()
    s.create_run(rec.run("old"), rec.step("old", 0))
    before = s.get_run("old")
    s.close()
    _exec(
        admin,
        s,
        'ALTER TABLE {t} DROP COLUMN "owner", DROP COLUMN "epoch", DROP COLUMN "lease_until"',
        "runs",
    )
    _exec(admin, s, "DELETE FROM {t} WHERE \"name\" = 'm002_leases'", "migrations")
    s2 = pg()
    cols = {
        r[0]: (r[1], r[2], r[3])
        for r in admin.execute(
            "SELECT column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = %s AND table_name = 'runs'",
            [s2.schema],
        )
    }
    assert cols["owner"][:2] == ("text", "YES")
    assert cols["epoch"] == ("bigint", "NO", "0")
    assert cols["lease_until"][:2] == ("double precision", "YES")
    assert s2.get_run("old") == before and s2.integrity_check() == "ok"
    assert s2.lease("old") == (None, 0, None)
    assert s2.acquire("old", "a", 30.0) == 1


def test_concurrent_openers_of_a_fresh_schema_do_not_race(
    tmp_path: Path, admin: psycopg.Connection[Any]
) -> None:
    """Eight stores open the same new schema at the same moment: the advisory lock
    serialises CREATE SCHEMA / CREATE TABLE, so none fails and each migration is applied
    exactly once."""
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "race")
    n = 8
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    stores: list[PostgresStore] = []

    def open_one() -> None:
        try:
            barrier.wait()
            stores.append(PostgresStore(dsn, schema=schema))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(stores) == n
        rows = admin.execute(
            sql.SQL('SELECT "name", count(*) FROM {} GROUP BY "name"').format(
                sql.Identifier(schema, "migrations")
            )
        ).fetchall()
        assert sorted(rows) == [(m, 1) for m in MIGRATIONS]
    finally:
        for s in stores:
            s.close()


def test_a_schema_migrated_by_a_newer_version_is_refused(
    pg: PgFactory, admin: psycopg.Connection[Any]
) -> None:
    s = pg()
    _exec(
        admin,
        s,
        'INSERT INTO {t} ("name", "applied_at") VALUES (%s, 0)',
        "migrations",
        "m999_from_the_future",
    )
    with pytest.raises(StoreError, match=r"m999_from_the_future.*upgrade flowstate"):
        pg()


@pytest.mark.parametrize(
    "bad",
    [
        'x"; DROP SCHEMA public CASCADE; --',
        "a b",
        "1abc",
        "",
        "pg_catalog",
        "x" * 64,
        "ümlaut",
        None,
    ],
)
def test_schema_names_are_allow_listed(bad: Any) -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresStore("postgresql://postgres@127.0.0.1:5432/test", schema=bad, min_size=0)


@pytest.mark.parametrize(
    ("kw", "culprit"),
    [
        ({"min_size": -1}, "min_size"),
        ({"max_size": 0}, "max_size"),
        ({"min_size": 3, "max_size": 2}, "max_size"),
        ({"max_size": True}, "max_size"),
    ],
)
def test_pool_sizes_are_checked(kw: dict[str, Any], culprit: str) -> None:
    with pytest.raises(ValueError, match=culprit):
        PostgresStore("postgresql://postgres@127.0.0.1:5432/test", **kw)


# -- exact text, hashes, strict validation (G7) ------------------------------------------------


def test_payload_columns_are_text_and_keep_the_exact_json_given(
    pg: PgFactory, rec: Rec, admin: psycopg.Connection[Any]
) -> None:
    s = pg()
    odd = '{ "b" : 1,\n  "a": [1.0, 2e3, -0.0], "u": "\u00e9\\u00e9", "k": {"z":null,"z":2} }'
    s.create_run(rec.run("r1", input=odd), rec.step("r1", 0, snapshot=odd))
    s.commit(
        "r1",
        writes=[rec.write("r1", 0, "a", update=odd)],
        effects=[rec.effect("r1", 0, "a", response=odd)],
    )
    assert s.get_run("r1").input == odd
    assert s.get_step("r1", 0).snapshot == odd  # type: ignore[union-attr]
    assert s.writes("r1")[0].update == odd
    assert s.effects("r1")[0].response == odd
    stored = _exec(admin, s, 'SELECT "update" FROM {t}', "writes").fetchone()[0]
    assert stored == odd
    types = dict(
        admin.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s",
            [s.schema],
        ).fetchall()
    )
    for col in (
        "runs.input",
        "runs.graph_doc",
        "runs.config",
        "steps.tasks",
        "steps.joins",
        "steps.snapshot",
        "writes.update",
        "writes.goto",
        "writes.usage",
        "effects.request",
        "effects.response",
        "interrupts.payload",
        "interrupts.answer",
    ):
        assert types[col] == "text", col


@pytest.mark.parametrize(
    ("table", "column", "value", "step"),
    [
        ("writes", "update", '{"n":2}', 0),  # still valid JSON: only the hash sees it
        ("effects", "response", '{"v":9}', 0),
        ("steps", "snapshot", '{"n":1}', 0),
        ("interrupts", "payload", '{"question":"ok!"}', 1),
        ("runs", "input", '{"n":1}', None),
        ("runs", "status", "completed", None),  # a mutable column: caught by mhash
    ],
)
def test_a_tampered_row_is_a_corrupt_row_error_naming_table_run_and_step(
    pg: PgFactory,
    rec: Rec,
    admin: psycopg.Connection[Any],
    table: str,
    column: str,
    value: str,
    step: int | None,
) -> None:
    s = pg()
    populate(s, rec, "victim")
    populate(s, rec, "bystander")
    kept = dump(s, "bystander")
    col = "id" if table == "runs" else "run_id"
    _exec(admin, s, f'UPDATE {{t}} SET "{column}" = %s WHERE "{col}" = %s', table, value, "victim")
    with pytest.raises(CorruptRowError) as ei:
        dump(s, "victim")
    assert (ei.value.table, ei.value.run_id, ei.value.step) == (table, "victim", step)
    assert "integrity hash mismatch" in str(ei.value)
    assert dump(s, "bystander") == kept
    report = s.integrity_check()
    assert report != "ok" and f"table '{table}'" in report and "victim" in report
    assert "bystander" not in report


def test_a_forged_row_with_a_valid_hash_still_fails_strict_validation(
    pg: PgFactory, rec: Rec, admin: psycopg.Connection[Any]
) -> None:
    """Someone who recomputes the hash still cannot smuggle in a value of the wrong kind."""
    from flowstate.checkpoints import row_hash

    s = pg()
    populate(s, rec, "r1")
    run = s.get_run("r1")
    mhash = row_hash("pwned", run.head_step, run.error, run.updated_at)
    _exec(
        admin,
        s,
        'UPDATE {t} SET "status" = %s, "mhash" = %s WHERE "id" = %s',
        "runs",
        "pwned",
        mhash,
        "r1",
    )
    with pytest.raises(CorruptRowError, match="invalid row") as ei:
        s.get_run("r1")
    assert ei.value.table == "runs"


def test_a_bad_attempts_row_is_a_corrupt_row_error(
    pg: PgFactory, rec: Rec, admin: psycopg.Connection[Any]
) -> None:
    s = pg()
    populate(s, rec, "r1")
    _exec(admin, s, 'UPDATE {t} SET "error" = NULL', "attempts")
    with pytest.raises(CorruptRowError) as ei:
        s.attempts("r1")
    assert (ei.value.table, ei.value.run_id, ei.value.step) == ("attempts", "r1", 1)
    assert "attempts" in s.integrity_check()


# -- transactions (G1, G4) ---------------------------------------------------------------------


class _Recording:
    """Wraps the store's connection and logs every statement it runs."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._c = conn
        self.log: list[str] = []

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        text = query if isinstance(query, str) else query.as_string(self._c)
        self.log.append(" ".join(text.split()).upper())
        return self._c.execute(query, params, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)


def _transactions(log: list[str]) -> list[list[str]]:
    txns: list[list[str]] = []
    cur: list[str] | None = None
    for s in log:
        if s == "BEGIN":
            assert cur is None, "nested BEGIN"
            cur = [s]
        elif s in ("COMMIT", "ROLLBACK"):
            assert cur is not None, f"{s} outside a transaction"
            txns.append([*cur, s])
            cur = None
        elif cur is not None:
            cur.append(s)
        elif '"COMMIT_FN"(' in s or s.startswith('WITH "INS" AS (INSERT INTO'):
            # one statement: its own transaction (autocommit), committed or rolled back whole
            txns.append(["(one statement)", s])
        else:
            assert s.startswith("SELECT"), f"a write outside a transaction: {s[:80]}"
    assert cur is None, "a transaction was left open"
    return txns


def test_each_write_operation_is_one_transaction_and_reads_open_none(
    pg: PgFactory, rec: Rec
) -> None:
    s = pg(max_size=1)  # one connection, so every statement goes through the recorder
    rec_conn = _Recording(s.conn)
    pooled = s._borrow

    @contextlib.contextmanager
    def recording() -> Iterator[Any]:
        with pooled() as c:  # the raw connection, or the recorder inside a write
            yield rec_conn if c is rec_conn._c else c

    s._borrow = recording  # type: ignore[method-assign]
    r = "r1"
    ops: list[tuple[str, Callable[[], Any]]] = [
        ("create_run", lambda: s.create_run(rec.run(r), rec.step(r, 0, snapshot="{}"))),
        (
            "commit",
            lambda: s.commit(
                r,
                writes=[rec.write(r, 0, "a")],
                effects=[rec.effect(r, 0, "a")],
                step=rec.step(r, 1),
                run_fields={"status": "running", "head_step": 1, "error": None},
            ),
        ),
        (
            "commit_partial",
            lambda: s.commit(r, writes=[rec.write(r, 1, "b")], run_fields={"head_step": 2}),
        ),
        (
            "commit_activation",  # the engine's shape: commit_fn, one statement
            lambda: s.commit(
                r,
                writes=[rec.write(r, 2, "c")],
                step=rec.step(r, 3),
                run_fields={"status": "running", "head_step": 3, "error": None},
            ),
        ),
        ("commit_failing", lambda: s.commit(r, writes=[rec.write(r, 0, "a")])),
        ("append_events", lambda: s.append_events(r, [(1, "x", "{}", 1.0), (2, "y", "{}", 2.0)])),
        ("record_effect", lambda: s.record_effect(rec.effect(r, 1, "b", 3))),
        (
            "record_interrupt",
            lambda: s.record_interrupt(rec.interrupt(r, 1, "b"), {"status": "paused"}),
        ),
        ("answer_interrupt", lambda: s.answer_interrupt(rec.interrupt(r, 1, "b"), '"y"')),
        ("record_attempt", lambda: s.record_attempt(rec.attempt(r, 1, "b"))),
        ("update_run", lambda: s.update_run(r, status="running")),
        ("send_signal", lambda: s.send_signal(r, "pause")),
        ("clear_signals", lambda: s.clear_signals(r)),
        ("delete_run", lambda: s.delete_run(r)),
    ]
    for name, op in ops:
        rec_conn.log.clear()
        commits = s.commits
        try:
            op()
        except StoreError:
            assert name.endswith("_failing"), name
        txns = _transactions(rec_conn.log)
        assert len(txns) == 1, f"{name} ran {len(txns)} write transactions"
        if txns[0][0] == "BEGIN":
            assert (txns[0][-1] == "ROLLBACK") == name.endswith("_failing"), (name, txns[0])
        else:
            assert name in ("commit_activation", "commit_failing", "append_events"), name
        assert s.commits == commits + (0 if name.endswith("_failing") else 1)
        assert s.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE, name

    populate(s, rec, "r2")
    for read in (
        lambda: s.get_run("r2"),
        lambda: s.list_runs(),
        lambda: s.steps("r2"),
        lambda: s.writes("r2"),
        lambda: s.effects("r2"),
        lambda: s.interrupts("r2"),
        lambda: s.latest_step("r2"),
        lambda: s.last_snapshot("r2", 5),
        lambda: s.signals("r2"),
        lambda: s.attempts("r2"),
        lambda: s.visit_counts("r2"),
        s.integrity_check,
        s.table_sizes,
        s.largest_runs,
        lambda: s.child_run_ids("r2"),
    ):
        rec_conn.log.clear()
        read()
        assert not [q for q in rec_conn.log if not q.startswith("SELECT")], rec_conn.log
        assert s.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_the_same_activation_committed_by_two_connections_lands_once(
    pg: PgFactory, rec: Rec
) -> None:
    """G4 across processes: two stores race to commit (r1, step 0, 'a'); the primary key
    lets exactly one through and the other gets a StoreError with nothing stored."""
    a, b = pg(), pg()
    a.create_run(rec.run("r1"), rec.step("r1", 0))
    writes = [rec.write("r1", 0, "a", update=f'{{"n":{i}}}') for i in (1, 2)]
    barrier = threading.Barrier(2)
    outcome: dict[int, BaseException | None] = {}

    def go(i: int, s: PostgresStore) -> None:
        barrier.wait()
        try:
            s.commit(
                "r1",
                writes=[writes[i]],
                effects=[rec.effect("r1", 0, "a", 5 + i)],
                step=rec.step("r1", 1),
                run_fields={"head_step": 1},
            )
            outcome[i] = None
        except BaseException as e:
            outcome[i] = e

    ts = [threading.Thread(target=go, args=(i, s)) for i, s in enumerate((a, b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    winners = [i for i, e in outcome.items() if e is None]
    losers = [e for e in outcome.values() if e is not None]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], StoreError) and "'a'" in str(losers[0])
    assert a.writes("r1") == [writes[winners[0]]]
    assert [e.seq for e in a.effects("r1")] == [5 + winners[0]]


# -- connections and errors --------------------------------------------------------------------


def test_a_dropped_connection_is_replaced_at_the_next_operation(
    pg: PgFactory, rec: Rec, admin: psycopg.Connection[Any]
) -> None:
    s = pg(max_size=1)
    populate(s, rec, "r1")
    before = dump(s, "r1")
    for op in ("read", "write"):
        pid = s.conn.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        if op == "read":
            assert dump(s, "r1") == before
        else:
            s.update_run("r1", status="running")
            assert s.get_run("r1").status == "running"
        assert s.conn.info.backend_pid != pid


def _use_inherited_store(tx: Any, s: PostgresStore) -> None:
    s.update_run("r1", status="paused", error="from the child")
    tx.send(s.conn.info.backend_pid)


def test_a_store_used_after_fork_opens_its_own_connection(pg: PgFactory, rec: Rec) -> None:
    """A child process must never talk over its parent's socket (nor close it): the
    store notices the fork and connects anew; the parent's session is untouched."""
    import multiprocessing

    s = pg(max_size=1)  # one connection: the parent's session is exactly this one
    s.create_run(rec.run("r1"), rec.step("r1", 0))
    parent_pid = s.conn.info.backend_pid
    ctx = multiprocessing.get_context("fork")
    rx, tx = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_use_inherited_store, args=(tx, s))
    p.start()
    assert rx.poll(30)
    child_pid = rx.recv()
    p.join(30)
    assert p.exitcode == 0
    assert child_pid != parent_pid
    assert s.conn.info.backend_pid == parent_pid
    assert (s.get_run("r1").status, s.get_run("r1").error) == ("paused", "from the child")


def test_an_unreachable_server_is_a_store_io_error() -> None:
    dsn = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"
    with pytest.raises(StoreIOError, match="cannot connect"):
        PostgresStore(dsn)
    lazy = PostgresStore(dsn, min_size=0)  # nothing happens until first use
    with pytest.raises(StoreIOError, match="cannot connect"):
        lazy.find_run("r1")


def test_a_closed_store_raises_store_io_error(pg: PgFactory, rec: Rec) -> None:
    s = pg()
    s.close()
    with pytest.raises(StoreIOError, match="closed"):
        s.find_run("r1")
    with pytest.raises(StoreIOError, match="closed"):
        s.create_run(rec.run("r1"), rec.step("r1", 0))


def test_nul_characters(pg: PgFactory, rec: Rec) -> None:
    """PostgreSQL text cannot hold NUL. A run's free-form error message (an exception's
    text) is stored with U+FFFD instead, so a failing run is still recorded; any other
    value with NUL is refused as a StoreError and nothing is stored."""
    s = pg()
    s.create_run(rec.run("r1"), rec.step("r1", 0))
    assert s.update_run("r1", status="failed", error="bad\x00byte").error == "bad\ufffdbyte"
    s.commit("r1", run_fields={"status": "failed", "head_step": 0, "error": "x\x00"})
    assert s.get_run("r1").error == "x\ufffd"
    with pytest.raises(StoreError):
        s.create_run(rec.run("a\x00b"), rec.step("a\x00b", 0))
    with pytest.raises(StoreError):
        s.commit("r1", writes=[rec.write("r1", 0, "a", update='"\x00"')])
    assert s.writes("r1") == [] and len(s.list_runs()) == 1


def test_unknown_run_is_run_not_found(pg: PgFactory) -> None:
    s = pg()
    with pytest.raises(RunNotFound):
        s.get_run("nope")
    with pytest.raises(RunNotFound):
        s.update_run("nope", status="failed")


# -- parity with SQLiteStore -------------------------------------------------------------------


def _no_clock(x: Any) -> Any:
    """``x`` with every run's ``updated_at`` (the wall clock of the last update) zeroed."""
    if isinstance(x, RunRecord):
        return x.model_copy(update={"updated_at": 0.0})
    if isinstance(x, dict):
        return {k: _no_clock(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_clock(v) for v in x]
    return x


def test_every_reader_matches_sqlite_on_the_same_operations(pg: PgFactory, tmp_path: Path) -> None:
    """Ids chosen so that case, '_' and non-ASCII would sort differently under a
    linguistic collation; both stores must agree byte-for-byte (COLLATE "C")."""
    ids = ["b", "B", "a_b", "ab", "é", "Z", "a", "a/1/x", "a/1/x/2/y", "a/2/Y", "a0", "a/z"]
    results = []
    for s in (SQLiteStore(tmp_path / "parity.db"), pg()):
        rec = Rec()
        for i, rid in enumerate(ids):
            populate(s, rec, rid, created_at=100.0 + (i % 3))
        s.update_run("b", status="completed", error=None)
        s.delete_run("a/1/x")
        results.append(
            {
                "runs": s.list_runs(include_children=True),
                "top": s.list_runs(limit=4),
                "before": s.list_runs(before=101.0),
                "children": {rid: s.child_run_ids(rid) for rid in ids},
                "dumps": {rid: dump(s, rid) for rid in ids},
                "visits": {rid: s.visit_counts(rid) for rid in ids},
                "largest": s.largest_runs(5),
                # the fleet's tables exist on Postgres only
                "sizes": {
                    k: v
                    for k, v in s.table_sizes().items()
                    if "migrations" not in k and k not in ("queue", "workers", "flow_limits")
                },
                "integrity": s.integrity_check(),
            }
        )
        s.close()
    sq, pq = _no_clock(results[0]), _no_clock(results[1])
    for key in sq:
        assert pq[key] == sq[key], key
    assert sq["integrity"] == "ok"
    assert sq["children"]["a"] == ["a/2/Y"]


def test_migrate_false_uses_the_schema_as_it_is(tmp_path: Path) -> None:
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "bare")
    s = PostgresStore(dsn, schema=schema, migrate=False)
    try:
        assert s.table_sizes() == {}
        assert s.integrity_check().startswith("error: ")
        with pytest.raises(StoreIOError):
            s.find_run("r1")
    finally:
        s.close()
    s = PostgresStore(dsn, schema=schema)
    try:
        assert s.integrity_check() == "ok" and s.find_run("r1") is None
    finally:
        s.close()


def test_prune_deletes_old_runs_and_their_children(pg: PgFactory, rec: Rec) -> None:
    from flowstate.checkpoints import prune

    s = pg()
    for rid, t in [("old", 10.0), ("old/1/sub", 11.0), ("old-running", 12.0), ("new", 500.0)]:
        populate(s, rec, rid, created_at=t)
    s.update_run("old", status="completed")
    s.update_run("old-running", status="running")
    assert prune(s, older_than=100.0, now=600.0) == ["old"]
    assert {r.id for r in s.list_runs(include_children=True)} == {"old-running", "new"}
    assert dump(s, "old/1/sub")["steps"] == []
