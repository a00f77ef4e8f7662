"""A database deleted, truncated or re-created under a running process (issue 16 item 8).

SQLite cannot see a file deleted or truncated by another process: the writer keeps its
descriptors, and a later opener of the path used to get a fresh, empty schema while the
writer reported ``completed``. Every write transaction now checks that the path still is
the database the store opened (same inode, same ``meta`` database id), every write
checks that the run it writes exists, and an empty file next to a non-empty WAL is never
opened as a fresh database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowstate import SQLiteStore
from flowstate.checkpoints import RunRecord, StepRecord
from flowstate.errors import RunNotFound, StoreIOError

CHILD = str(Path(__file__).resolve().parent / "owner_child.py")


def _spawn(db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, str(db), "r", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_writes(db: Path, n: int) -> None:
    deadline = time.time() + 30
    while True:
        try:
            with sqlite3.connect(db) as c:
                if c.execute("SELECT count(*) FROM writes").fetchone()[0] >= n:
                    return
        except sqlite3.Error:
            pass
        assert time.time() < deadline, "no progress"
        time.sleep(0.02)


@pytest.mark.parametrize("fault", ["delete", "truncate", "recreate"])
def test_a_writer_whose_database_vanished_fails_instead_of_completing(
    tmp_path: Path, fault: str
) -> None:
    db = tmp_path / "x.db"
    p = _spawn(db)
    _wait_writes(db, 2)
    if fault == "delete":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    elif fault == "truncate":
        with sqlite3.connect(db) as c:  # fold the WAL in, so the file holds the pages
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.truncate(db, 0)
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        SQLiteStore(db).close()  # a fresh empty database at the same path
    out, err = p.communicate(timeout=60)
    if p.returncode == 0:
        # success may only be reported if the run really is stored, whole
        s = SQLiteStore(db)
        try:
            assert s.integrity_check() == "ok"
            assert s.get_run("r").status == "completed", out
        finally:
            s.close()
        return
    assert "StoreIOError" in err or "RunNotFound" in err or "LeaseLost" in err, err[-2000:]
    assert '"completed"' not in out


def test_an_empty_file_next_to_a_live_wal_is_not_recreated(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    s = SQLiteStore(db)
    s.create_run(
        RunRecord(
            id="r",
            graph="g",
            fingerprint="f",
            graph_doc="{}",
            status="running",
            created_at=1.0,
            updated_at=1.0,
            input="{}",
        ),
        StepRecord(run_id="r", step=0, tasks="[]", joins="{}", snapshot="{}", created_at=1.0),
    )
    held = sqlite3.connect(db)  # keeps the WAL from being folded back and removed
    held.execute("SELECT count(*) FROM runs").fetchone()
    s.close()
    assert Path(f"{db}-wal").stat().st_size > 32
    os.truncate(db, 0)
    with pytest.raises(StoreIOError, match="truncated or deleted"):
        SQLiteStore(db)
    held.close()


def test_every_write_checks_the_database_id_and_the_run(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    s = SQLiteStore(db)
    assert s.database_id and len(s.database_id) == 32
    assert SQLiteStore(db).database_id == s.database_id
    with pytest.raises(RunNotFound):
        s.update_run("nope", status="paused")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value = 'other' WHERE key = 'database_id'")
    with pytest.raises(StoreIOError, match="no longer holds database"):
        s.send_signal("r", "cancel")
    s.close()
    json.dumps(str(db))
