"""Item 0b of issue 20: ``PostgresStore`` on a connection pool, its LISTEN/NOTIFY
facility, and reconnecting after the server dropped its connections."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flowstate.checkpoints import NotifyStore, PostgresStore
from tests.store.conftest import Rec, pg_schema, require_postgres


def _store(tmp_path: Path, name: str = "pool", **kw: Any) -> PostgresStore:
    # an application_name of its own: _kill_sessions must not cut the sessions of other
    # tests (or other processes) sharing the server
    schema = pg_schema(tmp_path, name)
    dsn = require_postgres()
    dsn += ("&" if "?" in dsn else "?") + f"application_name=fs_{schema}"[:63]
    return PostgresStore(dsn, schema=schema, **kw)


def _kill_sessions(store: PostgresStore) -> int:
    """Terminate every server session of this store's pool (by its schema's
    application... here: every session but ours that last touched the schema)."""
    with psycopg.connect(require_postgres(), autocommit=True) as admin:
        pids = [
            r[0]
            for r in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                "AND pid <> pg_backend_pid()",
                [store.app_name],
            )
        ]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    return len(pids)


def test_threads_get_their_own_connections_within_the_pool_size(tmp_path: Path) -> None:
    """Three write transactions open at the same moment (each waits inside its
    transaction for the others): impossible on one connection behind a lock."""
    s = _store(tmp_path, max_size=3)
    rec = Rec()
    for i in range(3):
        s.create_run(rec.run(f"r{i}"), rec.step(f"r{i}", 0))
    barrier = threading.Barrier(3, timeout=30)
    pids: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with s.write() as c:
                pids[i] = c.info.backend_pid
                barrier.wait()  # all three transactions are open now
                s.update_run(f"r{i}", status="paused")  # joins this transaction
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    assert len(set(pids.values())) == 3
    assert [s.get_run(f"r{i}").status for i in range(3)] == ["paused"] * 3
    s.close()


def test_a_write_joined_by_reads_sees_its_own_rows_and_rolls_back_whole(tmp_path: Path) -> None:
    s = _store(tmp_path)
    rec = Rec()
    with pytest.raises(RuntimeError), s.write():
        s.create_run(rec.run("r1"), rec.step("r1", 0))
        assert s.get_run("r1").id == "r1"  # the read joins the open transaction
        raise RuntimeError("changed my mind")
    assert s.find_run("r1") is None
    s.close()


def test_notify_inside_a_write_is_delivered_at_commit_and_never_on_rollback(
    tmp_path: Path,
) -> None:
    s = _store(tmp_path)
    assert isinstance(s, NotifyStore)
    other = _store(tmp_path, "other")  # another schema: its channels are its own
    with s.listen("work", "other") as ear, other.listen("work") as stranger:
        assert ear.wait(0.05) == []
        with s.write():
            s.notify("work", "a")
            assert ear.wait(0.3) == []  # not before COMMIT
        assert [(n.channel, n.payload) for n in ear.wait(10)] == [("work", "a")]
        with pytest.raises(RuntimeError), s.write():
            s.notify("work", "rolled back")
            raise RuntimeError
        s.notify("other", "b")
        assert [(n.channel, n.payload) for n in ear.wait(10)] == [("other", "b")]
        assert stranger.wait(0.2) == []
    with pytest.raises(ValueError, match="7900"):
        s.notify("work", "x" * 8000)
    s.close()
    other.close()


def test_a_listener_reconnects_after_its_connection_is_killed(tmp_path: Path) -> None:
    s = _store(tmp_path)
    ear = s.listen("work")
    pid = ear.backend_pid
    with psycopg.connect(require_postgres(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    got: list[Any] = []
    deadline = time.monotonic() + 30
    while not any(n.missed for n in got):
        assert time.monotonic() < deadline, got
        got += ear.wait(1.0)
    assert ear.reconnects == 1 and ear.backend_pid not in (None, pid)
    s.notify("work", "after")
    assert [n.payload for n in ear.wait(10)] == ["after"]
    ear.close()
    s.close()


def test_the_store_reconnects_after_its_pooled_connections_are_killed(tmp_path: Path) -> None:
    s = _store(tmp_path, max_size=3, min_size=2)
    rec = Rec()
    s.create_run(rec.run("r1"), rec.step("r1", 0))
    for _ in range(2):
        assert _kill_sessions(s) >= 1
        time.sleep(0.2)  # the server closes them
        assert s.get_run("r1").status == "running"  # a read retried on a new connection
        _kill_sessions(s)
        time.sleep(0.2)
        s.update_run("r1", status="paused")  # BEGIN failed: retried on a new connection
        assert s.get_run("r1").status == "paused"
        s.update_run("r1", status="running")
    s.close()


@pytest.mark.slow
def test_the_store_and_a_listener_survive_a_postgres_restart() -> None:
    """On a cluster of the test's own (the shared server is never restarted)."""
    from tests.fleet.own_postgres import own_postgres

    with own_postgres() as pg:
        s = PostgresStore(pg.dsn, schema="restart")
        rec = Rec()
        s.create_run(rec.run("r1"), rec.step("r1", 0))
        ear = s.listen("work")
        pg.restart_immediate()
        deadline = time.monotonic() + 60
        while True:
            try:
                s.update_run("r1", status="paused")
                break
            except Exception:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        assert s.get_run("r1").status == "paused"
        got: list[Any] = []
        while not any(n.missed for n in got):
            assert time.monotonic() < deadline
            got += ear.wait(1.0)
        s.notify("work", "back")
        assert [n.payload for n in ear.wait(10)] == ["back"]
        ear.close()
        s.close()
