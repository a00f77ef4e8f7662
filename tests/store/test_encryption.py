"""Encryption at rest (issue 16 item 11): payload columns sealed with AES-256-GCM under a
user-held keyring, on SQLite files and PostgreSQL schemas; typed errors without the key,
with a wrong key, a rotated-out key id, a ciphertext moved between rows; replay, fork, the
CLI and the inspector given the key; a kill -9 mid-run then resume; ``Redacted()``
fields never stored."""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from flowstate import END, START, GraphBuilder, NodeContext, SQLiteStore
from flowstate.checkpoints import Keyring, keyring_from_env, open_store
from flowstate.checkpoints._crypto import RowCipher, is_sealed
from flowstate.engine import Redacted
from flowstate.errors import (
    ConfigError,
    DecryptionFailed,
    EncryptionRequired,
    KeyMissing,
)

from .conftest import pg_schema, require_postgres

SECRET = "hunter2-s3cr3t"
BIG = "B1gR3sult-" * 1200  # > 8 KiB: stored as a blob on SQLite
K1, K2 = Keyring.generate_key(), Keyring.generate_key()


class S(BaseModel):
    secret: str = ""
    token: Annotated[str, Redacted()] = ""
    seen_token: str = ""
    answer: str = ""
    n: int = 0


def _echo(x: str) -> str:
    return x + "-" + BIG


async def fetch(s: S, ctx: NodeContext) -> dict:
    out = await ctx.effect("echo", _echo, s.secret)
    return {
        "n": s.n + len(out),
        "secret": s.secret + "!",
        "seen_token": "yes" if s.token else "none",
    }


async def ask(s: S, ctx: NodeContext) -> dict:
    return {"answer": str(await ctx.interrupt({"question": "pin for " + s.secret}))}


def graph() -> GraphBuilder[S]:
    g = GraphBuilder(S, name="secretive")
    g.add_node(fetch).add_node(ask)
    g.add_edge(START, "fetch").add_edge("fetch", "ask").add_edge("ask", END)
    return g


def ring(*kids: str, current: str | None = None) -> Keyring:
    keys = {"k1": K1, "k2": K2}
    return Keyring({k: keys[k] for k in kids}, current=current)


def env_keys(*kids: str) -> str:
    keys = {"k1": K1, "k2": K2}
    return ",".join(f"{k}:{base64.b64encode(keys[k]).decode()}" for k in kids)


def raw_bytes(db: Path) -> bytes:
    out = b""
    for p in (db, Path(f"{db}-wal")):
        if p.exists():
            out += p.read_bytes()
    return out


def pg_text(dsn: str, schema: str) -> str:
    import psycopg

    out = []
    with psycopg.connect(dsn) as c:
        for t in ("runs", "steps", "writes", "effects", "interrupts", "attempts", "events"):
            for row in c.execute(f'SELECT * FROM "{schema}"."{t}"'):
                out.append(repr(row))
    return "\n".join(out)


def run_to_end(app: Any, run_id: str = "r1") -> Any:
    r = app.run_sync({"secret": SECRET, "token": "tok-xyz"}, run_id=run_id)
    assert r.status == "paused"
    return app.resume_sync(run_id, "1234-pin")


# -- round trip on every SQL backend -----------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_run_round_trips_and_nothing_secret_is_stored_in_plaintext(tmp_path, backend):
    if backend == "sqlite":
        db = tmp_path / "enc.db"
        store: Any = SQLiteStore(db, encryption=ring("k1"))
    else:
        dsn, schema = require_postgres(), pg_schema(tmp_path, "enc")
        from flowstate.checkpoints import PostgresStore

        store = PostgresStore(dsn, schema=schema, encryption=ring("k1"))
    app = graph().compile(store=store)
    r = run_to_end(app)
    assert r.status == "completed"
    assert r.state.answer == "1234-pin" and r.state.secret == SECRET + "!"
    assert r.state.seen_token == "yes"  # the first execution saw the redacted input
    got = app.get_state("r1")
    assert got.secret == SECRET + "!" and got.answer == "1234-pin"
    assert got.token == ""  # never stored
    eff = store.effects("r1")
    assert eff[0].response == f'"{SECRET}-{BIG}"'
    assert "pin for " + SECRET in store.interrupts("r1")[0].payload
    if backend == "sqlite":
        store.close()
        raw = raw_bytes(db)
        for needle in (SECRET, "1234-pin", "tok-xyz", "B1gR3sult", "pin for"):
            assert needle.encode() not in raw, needle
        with sqlite3.connect(db) as c:
            assert is_sealed(c.execute("SELECT input FROM runs").fetchone()[0])
            assert all(is_sealed(b[0]) for b in c.execute("SELECT data FROM blobs"))
            assert c.execute("SELECT status FROM runs").fetchone()[0] == "completed"
    else:
        import psycopg

        with psycopg.connect(dsn) as c:  # a large result is a blob there too: of ciphertext
            blobs = [str(r) for r in c.execute(f'SELECT * FROM "{schema}"."blobs"')]
        text = pg_text(dsn, schema) + "\n".join(blobs)
        for needle in (SECRET, "1234-pin", "tok-xyz", "B1gR3sult"):
            assert needle not in text, needle
        assert "fsenc1:k1:" in text
        assert set(store.key_ids()) == {"k1"}
        keyless = PostgresStore(dsn, schema=schema)
        with pytest.raises(EncryptionRequired):
            keyless.get_run("r1")
        with pytest.raises(EncryptionRequired, match="refusing to write"):
            graph().compile(store=keyless).run_sync({"secret": "x"}, run_id="plain")
        assert keyless.find_run("plain") is None
        keyless.close()


def test_memory_store_round_trips_with_a_keyring_given(tmp_path):
    # memory:// keeps nothing at rest: a keyring is accepted and not needed
    app = graph().compile(store=open_store("memory://", encryption=ring("k1")))
    assert run_to_end(app).state.answer == "1234-pin"


# -- refusing clearly ----------------------------------------------------------------------


def _encrypted_db(tmp_path: Path) -> Path:
    db = tmp_path / "enc.db"
    store = SQLiteStore(db, encryption=ring("k1"))
    run_to_end(graph().compile(store=store))
    store.close()
    return db


def test_without_a_key_reads_and_writes_refuse_but_doctor_checks(tmp_path):
    db = _encrypted_db(tmp_path)
    keyless = SQLiteStore(db)
    with pytest.raises(EncryptionRequired, match="FLOWSTATE_KEYS") as e:
        keyless.get_run("r1")
    assert e.value.code == "FS304" and "runs" in e.value.where
    with pytest.raises(EncryptionRequired):
        keyless.effects("r1")
    # a keyless process never writes plaintext into an encrypted database
    with pytest.raises(EncryptionRequired, match="refusing to write"):
        graph().compile(store=keyless).run_sync({"secret": "x"}, run_id="plain")
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM runs WHERE id = 'plain'").fetchone()[0] == 0
    from flowstate.checkpoints import doctor

    rep = doctor(SQLiteStore(db, migrate=False))
    assert rep.ok and rep.damaged == []  # hashes cover the ciphertext: no key needed
    from flowstate.cli import app as cli

    r = CliRunner().invoke(cli, ["doctor", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "key ids in use: k1" in r.stdout


def test_a_wrong_key_fails_authentication_naming_the_row(tmp_path):
    db = _encrypted_db(tmp_path)
    wrong = SQLiteStore(db, encryption=Keyring({"k1": K2}))
    with pytest.raises(DecryptionFailed, match="table 'runs' row r1") as e:
        wrong.get_run("r1")
    assert e.value.code == "FS306" and e.value.key_id == "k1"


def test_key_rotation_old_runs_stay_readable_and_a_removed_key_is_named(tmp_path):
    db = tmp_path / "rot.db"
    s1 = SQLiteStore(db, encryption=ring("k1"))
    run_to_end(graph().compile(store=s1), "old")
    s1.close()
    s2 = SQLiteStore(db, encryption=ring("k1", "k2", current="k2"))
    app2 = graph().compile(store=s2)
    run_to_end(app2, "new")
    assert app2.get_state("old").answer == app2.get_state("new").answer == "1234-pin"
    with sqlite3.connect(db) as c:
        kids = {r[0].split(":")[1] for r in c.execute("SELECT input FROM runs ORDER BY id")}
        assert kids == {"k1", "k2"}
    s2.close()
    # which keys are still needed: counted without any key (doctor prints it)
    from flowstate.checkpoints import doctor

    kids = doctor(SQLiteStore(db, migrate=False)).key_ids
    assert set(kids) == {"k1", "k2"} and kids["k1"] == kids["k2"] > 5
    s3 = SQLiteStore(db, encryption=ring("k2"))
    assert graph().compile(store=s3).get_state("new").answer == "1234-pin"
    with pytest.raises(KeyMissing, match="'k1'") as e:
        s3.get_run("old")
    assert e.value.key_id == "k1" and e.value.code == "FS305"


def test_a_ciphertext_moved_to_another_row_fails_authentication(tmp_path):
    from flowstate.checkpoints import row_hash

    db = _encrypted_db(tmp_path)
    store = SQLiteStore(db, encryption=ring("k1"))
    run_to_end(graph().compile(store=store), "r2")
    store.close()
    with sqlite3.connect(db) as c:
        # r1's input into r2, with r2's integrity hash recomputed: the hash passes, the
        # associated data (table, column, row key) does not
        (inp,) = c.execute("SELECT input FROM runs WHERE id = 'r1'").fetchone()
        cols = ["id", "graph", "fingerprint", "graph_doc", "input", "parent_id", "parent_step"]
        cols += ["config", "created_at"]
        row = dict(
            zip(
                cols,
                c.execute(f"SELECT {', '.join(cols)} FROM runs WHERE id = 'r2'").fetchone(),
                strict=True,
            )
        )
        row["input"] = inp
        h = row_hash(*(row[k] for k in cols))
        c.execute("UPDATE runs SET input = ?, hash = ? WHERE id = 'r2'", [inp, h])
    store = SQLiteStore(db, encryption=ring("k1"))
    store.get_run("r1")
    with pytest.raises(DecryptionFailed, match="row r2"):
        store.get_run("r2")


def test_keyring_from_env_and_bad_specs(monkeypatch):
    k = keyring_from_env({"FLOWSTATE_KEYS": env_keys("k1", "k2")})
    assert k is not None and k.current == "k2" and k.key_ids == ["k1", "k2"]
    k = keyring_from_env({"FLOWSTATE_KEYS": env_keys("k1", "k2"), "FLOWSTATE_KEY_CURRENT": "k1"})
    assert k is not None and k.current == "k1"
    assert keyring_from_env({}) is None
    with pytest.raises(ConfigError, match="FLOWSTATE_KEYS"):
        keyring_from_env({"FLOWSTATE_KEYS": "k1:bm90IDMyIGJ5dGVz"})
    with pytest.raises(ConfigError, match="32 bytes"):
        Keyring({"k1": b"short"})
    assert "k1" in repr(ring("k1")) and str(K1) not in repr(ring("k1"))


# -- property: any text round-trips, bound to its row --------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.text(max_size=300),
    secret=st.text(max_size=60),
    n=st.integers(-(2**40), 2**40),
)
def test_property_random_states_round_trip_sealed(value, secret, n):
    cipher = RowCipher(ring("k1", "k2"), lambda: False)
    sealed = cipher.seal_value("steps", "snapshot", ("r", 3), value)
    assert is_sealed(sealed)
    assert cipher.open_value("steps", "snapshot", ("r", 3), sealed) == value
    with pytest.raises(DecryptionFailed):
        cipher.open_value("steps", "snapshot", ("r", 4), sealed)
    store = SQLiteStore(":memory:", encryption=ring("k1"))
    app = graph().compile(store=store)
    st_ = S(secret=secret, answer=value, n=n)
    run = app.run_sync(st_, run_id="p")
    assert run.status == "paused"
    got = app.get_state("p")
    assert got.answer == value and got.n >= n


# -- replay, fork, CLI, inspector given the key ------------------------------------------------


def test_replay_and_fork_work_on_an_encrypted_run(tmp_path):
    import asyncio

    db = _encrypted_db(tmp_path)
    app = graph().compile(store=SQLiteStore(db, encryption=ring("k1")))
    assert app.run_sync({"secret": SECRET}, run_id="r3").status == "paused"
    assert app.resume_sync("r3", "pin").status == "completed"
    assert asyncio.run(app.replay("r3")).identical
    # r1 was given a Redacted() token: replay sees the default, and says where it differs
    report = asyncio.run(app.replay("r1", raise_on_divergence=False))
    assert report.first_divergence is not None
    assert list(report.first_divergence.fields) == ["seen_token"]
    forked = asyncio.run(app.fork("r1", at=1, new_run_id="f1"))
    assert forked.status == "paused"
    assert app.get_state("f1").secret == SECRET + "!"
    with sqlite3.connect(db) as c:
        assert is_sealed(c.execute("SELECT input FROM runs WHERE id = 'f1'").fetchone()[0])


def test_cli_reads_with_flowstate_keys_and_refuses_without(tmp_path, monkeypatch):
    from flowstate.cli import app as cli

    db = _encrypted_db(tmp_path)
    monkeypatch.setenv("FLOWSTATE_KEYS", env_keys("k1"))
    r = CliRunner().invoke(cli, ["show", "r1", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "completed" in r.stdout
    monkeypatch.delenv("FLOWSTATE_KEYS")
    r = CliRunner().invoke(cli, ["show", "r1", "--db", str(db)])
    assert r.exit_code != 0 and "FS304" in r.stderr


def test_inspector_serves_an_encrypted_database_given_the_key(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from flowstate.service import create_app
    from tests.inspector.conftest import TOKEN
    from tests.inspector.graphs import registry

    monkeypatch.setenv("FLOWSTATE_KEYS", env_keys("k1"))
    db = tmp_path / "svc.db"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(registry(), db=str(db), token=TOKEN)) as client:
        tid = client.post("/v1/tasks", json={"graph": "counter", "input": {}}, headers=auth).json()[
            "id"
        ]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/tasks/{tid}", headers=auth).json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = client.get(f"/v1/tasks/{tid}/overview", headers=auth)
        assert r.status_code == 200, r.text
    with sqlite3.connect(db) as c:
        assert all(
            is_sealed(x[0])
            for x in c.execute("SELECT snapshot FROM steps WHERE snapshot IS NOT NULL")
        )
    monkeypatch.delenv("FLOWSTATE_KEYS")  # a server without the key refuses, clearly
    with TestClient(create_app(registry(), db=str(db), token=TOKEN)) as client:
        r = client.get(f"/v1/tasks/{tid}/overview", headers=auth)
        assert r.status_code == 503 and r.json()["code"] == "FS304"
        assert "FLOWSTATE_KEYS" in r.json()["detail"]


# -- kill -9 mid-run, then resume with the key ----------------------------------------------


def _kill_then_resume(tmp_path: Path, kills: int) -> None:
    """Run linear20 under FLOWSTATE_KEYS in a child, SIGKILL it ``kills`` times at growing
    progress, then resume it to the end in a new process."""
    repo = Path(__file__).resolve().parents[2]
    db, sink = str(tmp_path / "crash.db"), str(tmp_path / "sink.db")
    env = {**os.environ, "PYTHONPATH": str(repo), "FLOWSTATE_KEYS": env_keys("k1")}
    child = [sys.executable, str(repo / "tests" / "crash_child.py"), db, "linear20", "c1", sink]
    for k in range(kills):
        p = subprocess.Popen([*child, "0.05"], env=env, stdout=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline and p.poll() is None
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    if c.execute("SELECT count(*) FROM writes").fetchone()[0] >= 3 * (k + 1):
                        break
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    out = subprocess.run(child, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "completed", out.stderr
    with sqlite3.connect(db) as c:
        assert all(is_sealed(r[0]) for r in c.execute('SELECT "update" FROM writes'))
        assert c.execute("SELECT count(*) FROM writes").fetchone()[0] == 20
    store = SQLiteStore(db, encryption=ring("k1"))
    # every node's effect result was read back (decrypted) from the journal or performed
    assert len(store.effects("c1")) == 20
    assert all(e.response.startswith('"ok:n') for e in store.effects("c1"))
    store.close()
    keyless = subprocess.run(
        child, env={**env, "FLOWSTATE_KEYS": ""}, capture_output=True, text=True, timeout=120
    )
    assert keyless.returncode != 0 and "FS304" in keyless.stderr


def test_kill_9_mid_run_then_resume_with_the_key(tmp_path):
    _kill_then_resume(tmp_path, kills=1)


@pytest.mark.slow
def test_kill_9_five_times_then_resume_with_the_key(tmp_path):
    _kill_then_resume(tmp_path, kills=5)


# -- Redacted() ------------------------------------------------------------------------------


def test_redacted_fields_are_never_stored_and_resume_sees_the_default(tmp_path):
    db = tmp_path / "red.db"
    app = graph().compile(store=SQLiteStore(db))  # redaction needs no encryption
    r = app.run_sync({"secret": "s", "token": "tok-xyz"}, run_id="r")
    assert r.status == "paused" and r.state.seen_token == "yes"
    assert b"tok-xyz" not in raw_bytes(db)
    done = app.resume_sync("r", "p")
    assert done.state.token == ""  # the resumed run sees the default

    class Bad(BaseModel):
        key: Annotated[str, Redacted()]

    with pytest.raises(TypeError, match="give it a default"):
        GraphBuilder(Bad).add_node(fetch)


# -- store seams: attempts, superseded writes, schema migration, effect replace --------------


def _keyed_store(tmp_path: Path, backend: str, keyring: Keyring | None) -> Any:
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "seams.db", encryption=keyring)
    from flowstate.checkpoints import PostgresStore

    return PostgresStore(
        require_postgres(), schema=pg_schema(tmp_path, "seams"), encryption=keyring
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_store_seam_seals_and_opens(tmp_path, backend, rec):
    s = _keyed_store(tmp_path, backend, ring("k1"))
    s.create_run(rec.run("r", input='{"pw":"sekret-in"}'), rec.step("r", 0, snapshot='{"pw":"x"}'))
    s.commit(
        "r",
        writes=[rec.write("r", 0, update='{"pw":"sekret-up"}')],
        effects=[rec.effect("r", 0, response='{"pw":"sekret-eff"}')],
        step=rec.step("r", 1, snapshot='{"pw":"sekret-snap"}'),
    )
    s.record_attempt(rec.attempt("r", 0, error="ValueError: sekret-err"))
    s.record_effect(rec.effect("r", 0, response='{"pw":"sekret-again"}'), replace=True)
    assert s.effects("r")[0].response == '{"pw":"sekret-again"}'
    assert s.attempts("r")[0].error == "ValueError: sekret-err"
    s.append_events("r", [(1, "update", '{"pw":"sekret-event"}', 1.0)])
    assert s.events_since("r") == [(1, "update", '{"pw":"sekret-event"}', 1.0)]
    # a step re-run keeps the superseded write in attempts, sealed there too
    assert s.supersede_writes("r", 0) == 1
    kept = [a.error for a in s.attempts("r") if a.attempt < 0]
    assert len(kept) == 1 and "sekret-up" in kept[0]
    # a state-schema migration on resume: opened, converted, sealed again, hashes valid
    s.migrate_run(
        "r",
        state=lambda raw: raw.replace("sekret", "migrated"),
        update=lambda raw: raw,
        fingerprint="e" * 64,
        graph_doc='{"nodes":{}}',
    )
    assert s.get_run("r").input == '{"pw":"migrated-in"}'
    assert s.get_step("r", 1).snapshot == '{"pw":"migrated-snap"}'
    assert s.integrity_check() == "ok"
    if backend == "sqlite":
        s.close()
        raw = raw_bytes(tmp_path / "seams.db")
        assert b"sekret" not in raw and b"migrated" not in raw
        assert not SQLiteStore(tmp_path / "seams.db", migrate=False).damaged_rows()
    else:
        text = pg_text(s.dsn, s.schema)
        assert "sekret" not in text and "migrated" not in text
        s.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_schedule_input_and_the_runs_it_fires_are_sealed(tmp_path, backend, rec):
    from flowstate.checkpoints import ScheduleRecord

    s = _keyed_store(tmp_path, backend, ring("k1"))
    sched = ScheduleRecord(
        name="nightly",
        graph="g",
        cron="0 3 * * *",
        tz="UTC",
        input='{"pw":"sekret-sched"}',
        next_fire=1_700_000_000.0,
        created_at=1_700_000_000.0,
        updated_at=1_700_000_000.0,
    )
    s.put_schedule(sched)
    assert s.get_schedule("nightly").input == '{"pw":"sekret-sched"}'
    assert [x.input for x in s.list_schedules()] == ['{"pw":"sekret-sched"}']
    run = rec.run("nightly@1", input='{"pw":"sekret-fired"}')
    assert s.fire_schedule("nightly", 1_700_000_000.0, 1_700_086_400.0, run, rec.step(run.id, 0))
    assert s.get_run("nightly@1").input == '{"pw":"sekret-fired"}'
    if backend == "sqlite":
        s.close()
        assert b"sekret" not in raw_bytes(tmp_path / "seams.db")
    else:
        import psycopg

        with psycopg.connect(s.dsn) as c:
            (inp,) = c.execute(f'SELECT "input" FROM "{s.schema}"."schedules"').fetchone()
        assert is_sealed(inp) and "sekret" not in pg_text(s.dsn, s.schema)
        s.close()
