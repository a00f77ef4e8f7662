"""How ``SQLiteStore`` types what SQLite raises, and what it lets through unchanged.

Inside a write transaction: a constraint violation is a ``StoreError``, any other
``sqlite3.DatabaseError`` (malformed page, I/O error, full disk …) a ``StoreIOError``, both
with the SQLite error as ``__cause__`` and after the rollback. flowstate's own errors,
other exceptions and ``BaseException`` s propagate unchanged, and so does
``sqlite3.ProgrammingError`` (a bug in the calling code, not a storage failure).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowstate.checkpoints import SQLiteStore
from flowstate.errors import CorruptRowError, RunNotFound, StoreError, StoreIOError

from .conftest import Rec


@pytest.fixture
def sq(tmp_path: Path) -> Any:
    s = SQLiteStore(tmp_path / "s.db")
    yield s
    s.close()


class _Abort(BaseException):
    pass


def _no_rows(store: SQLiteStore) -> bool:
    return store.conn.execute("SELECT count(*) FROM signals").fetchone()[0] == 0


def _insert_signal(c: sqlite3.Connection) -> None:
    c.execute("INSERT INTO signals (run_id, kind, created_at) VALUES ('r', 'pause', 0)")


def test_a_database_error_inside_a_write_is_a_store_io_error_after_rollback(
    sq: SQLiteStore,
) -> None:
    with pytest.raises(StoreIOError) as ei:
        with sq.write() as c:
            _insert_signal(c)
            c.execute("INSERT INTO no_such_table VALUES (1)")
    assert isinstance(ei.value.__cause__, sqlite3.OperationalError)
    assert str(sq.path) in str(ei.value) and "no_such_table" in str(ei.value)
    assert not sq.conn.in_transaction
    assert _no_rows(sq)


def test_a_constraint_violation_inside_a_write_is_a_store_error_not_io(
    sq: SQLiteStore,
) -> None:
    with pytest.raises(StoreError) as ei:
        with sq.write() as c:
            _insert_signal(c)
            _insert_signal(c)
    assert not isinstance(ei.value, StoreIOError)
    assert isinstance(ei.value.__cause__, sqlite3.IntegrityError)
    assert "signals" in str(ei.value)
    assert not sq.conn.in_transaction
    assert _no_rows(sq)


@pytest.mark.parametrize(
    "exc",
    [RunNotFound("r"), CorruptRowError("runs", "r", None, "x"), ValueError("v"), _Abort()],
    ids=lambda e: type(e).__name__,
)
def test_other_exceptions_propagate_unchanged_after_rollback(
    sq: SQLiteStore, exc: BaseException
) -> None:
    with pytest.raises(type(exc)) as ei:
        with sq.write() as c:
            _insert_signal(c)
            raise exc
    assert ei.value is exc
    assert not sq.conn.in_transaction
    assert _no_rows(sq)


def test_a_programming_error_is_not_blamed_on_storage(sq: SQLiteStore) -> None:
    with pytest.raises(sqlite3.ProgrammingError):
        with sq.write() as c:
            c.execute("SELECT ?, ?", [1])
    assert not sq.conn.in_transaction


def test_a_duplicate_write_in_one_commit_names_the_run_step_and_task(
    sq: SQLiteStore, rec: Rec
) -> None:
    sq.create_run(rec.run("r1"), rec.step("r1", 0))
    with pytest.raises(StoreError) as ei:
        sq.commit("r1", writes=[rec.write("r1", 0, "a"), rec.write("r1", 0, "a")])
    msg = str(ei.value)
    assert "'a'" in msg and "r1" in msg and "step 0" in msg and "writes" in msg, msg
    assert isinstance(ei.value.__cause__, sqlite3.IntegrityError)
    assert sq.writes("r1") == []


def test_migrate_false_opens_without_creating_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    s = SQLiteStore(path, migrate=False)
    try:
        assert s.table_sizes() == {}
        assert s.integrity_check() == "ok"
    finally:
        s.close()
    s = SQLiteStore(path)
    try:
        sizes = s.table_sizes()
        assert sizes["runs"] == 0 and sizes["_sqlite_migrations"] >= 1
    finally:
        s.close()


def test_integrity_check_reports_an_sqlite_error_as_its_diagnosis(
    sq: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Conn:
        def execute(self, sql: str, *a: Any) -> Any:
            raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(sq, "conn", Conn())
    assert sq.integrity_check() == "error: database disk image is malformed"


def test_invalid_utf8_in_one_row_fails_only_that_row(sq: SQLiteStore, rec: Rec) -> None:
    for rid in ("good", "bad"):
        sq.create_run(rec.run(rid), rec.step(rid, 0))
    sq.conn.execute("UPDATE runs SET input = CAST(? AS TEXT) WHERE id = 'bad'", [b'{"n":\xff}'])
    assert sq.get_run("good").id == "good"
    with pytest.raises(CorruptRowError) as ei:
        sq.get_run("bad")
    assert ei.value.table == "runs" and ei.value.run_id == "bad"


def test_child_run_ids_reads_ids_only(sq: SQLiteStore, rec: Rec) -> None:
    """A damaged row of a child or of a fork does not stop the parent listing its
    children: only ids are read (the engine's history uses this)."""
    for rid in ("p", "p/1/a", "p/2/b"):
        sq.create_run(rec.run(rid), rec.step(rid, 0))
    sq.create_run(rec.run("fork", parent_id="p", parent_step=1), rec.step("fork", 0))
    sq.conn.execute("UPDATE runs SET input = 'garbage' WHERE id IN ('p/2/b', 'fork')")
    with pytest.raises(CorruptRowError):
        sq.list_runs(parent_id="p", include_children=True)
    assert sq.child_run_ids("p") == ["p/1/a", "p/2/b"]
