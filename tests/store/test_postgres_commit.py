"""Issue 25: ``PostgresStore.commit`` of an activation in one statement (``commit_fn``,
migration ``m850_commit_fn``).

Pinned here: the engine's commit shape is one round trip; it writes exactly the rows (and
hashes) of the statement-per-row path; the fence (owner, epoch, a pending cancel) is
checked inside it and a refused commit writes nothing; a schema made before m850 opens
(``migrate=False``: commits take the statement path; migrated: it gains the function) and
its rows verify; a connection lost before or after the server ran the commit is told
apart by the stored write row (retried once, or taken as landed), never committed twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from flowstate.checkpoints._postgres import MIGRATIONS, PostgresStore
from flowstate.errors import CancelledElsewhere, LeaseLost, RunNotFound, StoreError

from .conftest import Rec, pg_schema, require_postgres
from .test_contract import dump

PgFactory = Callable[..., PostgresStore]
HEAD = {"status": "running", "head_step": 1, "error": None}


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PgFactory]:
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
    with psycopg.connect(require_postgres(), autocommit=True) as c:
        yield c


class _Counting:
    """Counts the statements a store sends (every ``execute`` is a round trip)."""

    def __init__(self, s: PostgresStore) -> None:
        self.log: list[str] = []
        pooled = s._borrow
        outer = self

        class Conn:
            def __init__(self, c: psycopg.Connection[Any]) -> None:
                self._c = c

            def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
                text = query if isinstance(query, str) else query.as_string(self._c)
                outer.log.append(" ".join(text.split()))
                return self._c.execute(query, params, **kw)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._c, name)

        @contextlib.contextmanager
        def counting() -> Iterator[Any]:
            with pooled() as c:
                yield Conn(c)

        s._borrow = counting  # type: ignore[method-assign]


def _activation(s: PostgresStore, rec: Rec, run_id: str = "r", step: int = 0) -> None:
    s.commit(
        run_id,
        writes=[rec.write(run_id, step, "t")],
        step=rec.step(run_id, step + 1),
        run_fields={**HEAD, "head_step": step + 1},
    )


def test_an_activation_is_one_statement_with_the_rows_of_the_statement_path(
    pg: PgFactory, rec: Rec
) -> None:
    fast, slow = pg("fast"), pg("slow")
    run, step0 = rec.run("r"), rec.step("r", 0, snapshot='{"n":0}')
    write, step1 = rec.write("r", 0, "t"), rec.step("r", 1)
    for s in (fast, slow):
        s.create_run(run, step0, owner="w", ttl=30)
    slow._fast_commit = False  # the statement-per-row path (SQLWrites.commit)
    counter = _Counting(fast)
    for s in (fast, slow):
        s.commit("r", writes=[write], step=step1, run_fields=HEAD)
        if s is fast:
            assert len(counter.log) == 1 and '"commit_fn"(' in counter.log[0], counter.log
    a, b = dump(fast, "r"), dump(slow, "r")
    # the same rows and hashes, but for the run head's update time (the clock moved)
    assert a["writes"] == b["writes"] and a["steps"] == b["steps"]
    ra, rb = fast.get_run("r"), slow.get_run("r")
    assert (ra.status, ra.head_step, ra.error) == (rb.status, rb.head_step, rb.error)
    assert fast.integrity_check() == "ok" and slow.integrity_check() == "ok"
    assert fast.commits == slow.commits


def test_a_write_without_step_or_head_and_the_wake_time(pg: PgFactory, rec: Rec) -> None:
    s = pg()
    s.create_run(rec.run("r"), rec.step("r", 0))
    s.update_run("r", status="paused", wake_at=5.0)
    s.commit("r", writes=[rec.write("r", 0, "a")])  # no step row, no run head
    assert [w.task_path for w in s.writes("r")] == ["a"]
    assert [st.step for st in s.steps("r")] == [0]
    # a head update to a non-paused status clears the wake time, as the statement path does
    s.commit("r", writes=[rec.write("r", 0, "b")], run_fields={**HEAD, "head_step": 0})
    row = s._read(s._q('SELECT "wake_at" FROM {runs} WHERE "id" = %s'), ["r"])
    assert row == [(None,)] and s.integrity_check() == "ok"


def test_a_refused_commit_writes_nothing(pg: PgFactory, rec: Rec) -> None:
    a, b = pg("x"), pg("x")
    a.create_run(rec.run("r"), rec.step("r", 0), owner="a", ttl=30)
    _activation(a, rec)
    before = dump(a, "r")
    # a pending cancel from another process: the owner's next commit is refused
    b.send_signal("r", "cancel")
    with pytest.raises(CancelledElsewhere):
        _activation(a, rec, step=1)
    b.clear_signals("r")
    assert dump(a, "r") == before
    # a takeover: the former owner's commit is refused by the epoch
    assert b.acquire("r", "b", 30, alive=lambda o: False) == 2
    with pytest.raises(LeaseLost, match="now held by b at epoch 2"):
        _activation(a, rec, step=1)
    assert dump(a, "r") == before
    _activation(b, rec, step=1)  # the owner's goes through
    assert len(b.writes("r")) == 2
    # unfenced to a missing run, fenced to a deleted one
    with pytest.raises(RunNotFound):
        _activation(pg("y"), rec, run_id="ghost")
    b.delete_run("r")
    with pytest.raises(LeaseLost, match="run deleted"):
        _activation(b, rec, step=2)


def test_a_second_commit_of_an_activation_is_refused_whole(pg: PgFactory, rec: Rec) -> None:
    s = pg()
    s.create_run(rec.run("r"), rec.step("r", 0))
    _activation(s, rec)
    before = dump(s, "r")
    with pytest.raises(StoreError, match="already committed"):
        s.commit(
            "r",
            writes=[rec.write("r", 0, "t", update='{"n":9}')],
            step=rec.step("r", 5),
            run_fields={**HEAD, "head_step": 5},
        )
    assert dump(s, "r") == before


def test_a_schema_from_before_m850_opens_and_verifies(
    pg: PgFactory, rec: Rec, admin: psycopg.Connection[Any]
) -> None:
    """A schema as current main made it (no commit_fn): opened with migrate=False its
    commits take the statement path; opened normally it gains the function; its rows
    written before and after verify."""
    assert MIGRATIONS[-1] == "m850_commit_fn"
    s = pg()
    s.create_run(rec.run("r"), rec.step("r", 0))
    _activation(s, rec)
    s.close()
    fn = sql.Identifier(s.schema, "commit_fn")
    admin.execute(sql.SQL("DROP FUNCTION {}").format(fn))
    admin.execute(
        sql.SQL('DELETE FROM {} WHERE "name" = %s').format(sql.Identifier(s.schema, "migrations")),
        ["m850_commit_fn"],
    )
    old = pg(migrate=False)
    _activation(old, rec, step=1)
    assert old._fast_commit is False
    # doctor names the missing migration; the rows themselves verify
    assert old.integrity_check() == "migrations not applied: m850_commit_fn"
    new = pg()
    _activation(new, rec, step=2)
    assert new._fast_commit is True and new.integrity_check() == "ok"
    assert [w.step for w in new.writes("r")] == [0, 1, 2]
    names = [r[0] for r in new._read(new._q('SELECT "name" FROM {migrations} ORDER BY 1'))]
    assert names == sorted(MIGRATIONS)


def test_a_pooled_connection_killed_while_idle_is_replaced(
    pg: PgFactory, rec: Rec, admin: psycopg.Connection[Any]
) -> None:
    s = pg(max_size=1)
    s.create_run(rec.run("r"), rec.step("r", 0), owner="w", ttl=30)
    pid = s.conn.info.backend_pid
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    _activation(s, rec)  # the statement fails on the dead session: sent again
    assert [w.step for w in s.writes("r")] == [0] and s.conn.info.backend_pid != pid
    assert s.commits == 2


def test_a_connection_lost_after_the_commit_landed_is_not_committed_twice(
    pg: PgFactory, rec: Rec, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = pg(max_size=1)
    s.create_run(rec.run("r"), rec.step("r", 0))
    real = psycopg.Connection.execute
    calls: list[str] = []

    def lose_after(self: psycopg.Connection[Any], query: Any, params: Any = None, **kw: Any):
        cur = real(self, query, params, **kw)
        text = query if isinstance(query, str) else query.as_string(self)
        if '"commit_fn"(' in text and not calls:
            calls.append(text)
            self.close()  # the answer never arrives
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return cur

    monkeypatch.setattr(psycopg.Connection, "execute", lose_after)
    _activation(s, rec)
    monkeypatch.undo()
    assert calls and [w.step for w in s.writes("r")] == [0]
    assert s.get_run("r").head_step == 1 and s.integrity_check() == "ok"
