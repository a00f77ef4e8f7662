"""`flowstate doctor` finds what the engine finds: damaged rows of every table, listed by
run and row; `--quarantine RUN` sets a damaged run aside so the rest stays usable;
`--vacuum` reports the bytes it really freed."""

from __future__ import annotations

import os
import sqlite3

from typer.testing import CliRunner

from flowstate.checkpoints import SQLiteStore, doctor
from flowstate.cli import app

G = "tests.cli_graphs:graph"


def invoke(*argv: str):
    return CliRunner().invoke(app, list(argv))


def _db_with_runs(tmp_path, n: int = 3) -> str:
    db = str(tmp_path / "d.db")
    for i in range(n):
        assert invoke("run", G, "--db", db, "-q", "--run-id", f"r{i}").exit_code == 0
    return db


def test_a_tampered_writes_row_is_found_listed_and_quarantined(tmp_path):
    db = _db_with_runs(tmp_path)
    with sqlite3.connect(db) as c:
        c.execute("""UPDATE writes SET "update" = '{"n": 999}' WHERE run_id = 'r1' AND step = 1""")
    r = invoke("show", "r1", "--db", db)
    assert r.exit_code == 1 and "FS301" in r.stderr  # the engine refuses the row...
    r = invoke("doctor", "--db", db)
    assert r.exit_code == 1, r.output  # ...and doctor no longer says all is well
    assert "1 damaged row(s) in 1 run(s): r1" in r.stdout
    assert "writes" in r.stdout and "integrity hash mismatch" in r.stdout
    assert "--quarantine r1" in r.stdout
    r = invoke("doctor", "--db", db, "--quarantine", "r1")
    assert r.exit_code == 0, r.output
    assert "quarantined run r1" in r.stdout and "every hash and JSON column checks" in r.stdout
    r = invoke("runs", "--db", db)
    assert "r0" in r.stdout and "r2" in r.stdout and "r1" not in r.stdout
    assert invoke("show", "r2", "--db", db, "--graph", G).exit_code == 0
    with sqlite3.connect(db) as c:  # set aside, not deleted
        assert c.execute("SELECT count(*) FROM quarantine_writes").fetchone()[0] == 2
        assert c.execute("SELECT count(*) FROM quarantine_runs").fetchone()[0] == 1


def test_every_table_is_checked_for_hashes_and_json(tmp_path):
    db = _db_with_runs(tmp_path)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE runs SET input = '{\"n\": 5}' WHERE id = 'r0'")
        c.execute("UPDATE steps SET tasks = 'not json' WHERE run_id = 'r2' AND step = 0")
    rep = doctor(SQLiteStore(db, migrate=False))
    assert not rep.ok
    assert {(d.table, d.run_id) for d in rep.damaged} == {("runs", "r0"), ("steps", "r2")}
    assert rep.damaged_runs == ["r0", "r2"]


def test_json_is_checked_even_when_the_hash_matches(tmp_path):
    """A row whose hash was computed over text that is not JSON (a buggy writer)."""
    from flowstate.checkpoints import row_hash
    from flowstate.checkpoints._common import WRITE_COLS  # the column order of the hash

    db = _db_with_runs(tmp_path, 1)
    where = "WHERE run_id = 'r0' AND step = 0"
    with sqlite3.connect(db) as c:
        names = ", ".join(f'"{k}"' for k in WRITE_COLS)
        vals = list(c.execute(f"SELECT {names} FROM writes {where}").fetchone())
        vals[WRITE_COLS.index("update")] = "{broken"
        c.execute(f'UPDATE writes SET "update" = ?, hash = ? {where}', ["{broken", row_hash(*vals)])
    rep = doctor(SQLiteStore(db, migrate=False))
    assert [(d.table, d.run_id, d.step) for d in rep.damaged] == [("writes", "r0", 0)]
    assert "not JSON" in rep.damaged[0].problem


def test_vacuum_reports_the_bytes_it_freed(tmp_path):
    db = _db_with_runs(tmp_path, 30)
    assert invoke("prune", "--db", db, "--older-than", "0s").exit_code == 0

    def on_disk() -> int:
        return sum(os.path.getsize(db + s) for s in ("", "-wal", "-shm") if os.path.exists(db + s))

    before = on_disk()
    r = invoke("doctor", "--db", db, "--vacuum")
    assert r.exit_code == 0, r.output
    after = on_disk()
    freed = int(r.stdout.split("vacuum freed ")[1].split(" bytes")[0].replace(",", ""))
    assert freed == before - after and freed > 0
    assert f"now {after:,}" in r.stdout
