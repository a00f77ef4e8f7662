"""Many runs, many processes, one SQLite file: no "database is locked" (R4 fast tier, G6).

M=50 runs of linear-20 (20 nodes, one journaled effect each: 2,000 write transactions)
are split over 5 writer processes (``_writer.py``, started with ``subprocess`` so each
opens its own connection), all on one file, released together. Meanwhile a reader thread in
this process polls ``list_runs`` and ``get_state`` every 50 ms through its own store.

Asserts: no error of any kind anywhere, so in particular 0 "database is locked"; all 50
runs completed with the golden final state, 20 writes and 20 effects each; the reader saw
progress and never failed; ``integrity_check() == "ok"``; the WAL stays under 64 MiB.

The negative control runs a smaller version of the same workload through a store variant
that starts write transactions with a deferred ``BEGIN`` and reads before writing: it must
hit "database is locked", which shows this test can see the bug it guards against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowstate import SQLiteStore

from ._graphs import CHAIN_LENGTH, chain_final, chain_graph

WRITER = Path(__file__).with_name("_writer.py")
REPO = Path(__file__).resolve().parents[2]
RUNS = 50
PROCESSES = 5
POLL_SECONDS = 0.05
WAL_LIMIT = 64 * 1024 * 1024
TIMEOUT = 60.0


@dataclass
class ReaderLog:
    polls: int = 0
    states_read: int = 0
    completed_seen: int = 0
    errors: list[str] = field(default_factory=list)


def _reader(db: Path, stop: threading.Event, log: ReaderLog) -> None:
    """Poll like a status page: the newest runs, then the state of a few of them."""
    store = SQLiteStore(db)
    app = chain_graph(store)
    try:
        while not stop.is_set():
            try:
                runs = store.list_runs(limit=100)
                log.completed_seen = max(
                    log.completed_seen, sum(r.status == "completed" for r in runs)
                )
                for r in runs[:5]:
                    state = app.get_state(r.id)
                    assert 0 <= state.n <= CHAIN_LENGTH, state
                    log.states_read += 1
            except Exception as e:
                log.errors.append(f"{type(e).__name__}: {e}")
            log.polls += 1
            stop.wait(POLL_SECONDS)
    finally:
        store.close()


def _start_writers(
    db: Path, go: Path, jobs: list[list[tuple[str, int]]], deferred: bool = False
) -> list[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    env.pop("FLOWSTATE_CRASH_AT", None)
    procs = []
    for share in jobs:
        argv = [
            sys.executable,
            str(WRITER),
            str(db),
            str(go),
            *(f"{rid}:{seed}" for rid, seed in share),
        ]
        if deferred:
            argv.append("--deferred")
        procs.append(
            subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env
            )
        )
    return procs


def _release_and_collect(
    procs: list[subprocess.Popen[str]], go: Path, *, locks_expected: bool = False
) -> list[dict[str, Any]]:
    """Wait until every writer is ready, release them together, collect their reports.
    ``locks_expected`` (the negative control): a lock error a writer logged is the
    outcome sought, not a failure of the harness."""
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "ready":
            p.kill()
            _, err = p.communicate()
            pytest.fail(f"writer {p.pid} did not start: {line!r}\n{err[-3000:]}")
    go.touch()
    reports = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"writer {p.pid} did not finish in {TIMEOUT} s")
        assert p.returncode == 0, f"writer {p.pid} exited {p.returncode}: {err[-3000:]}"
        if not locks_expected:
            assert "database is locked" not in err, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def _split(runs: list[tuple[str, int]], n: int) -> list[list[tuple[str, int]]]:
    return [runs[i::n] for i in range(n)]


def test_fifty_runs_in_five_processes_on_one_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    SQLiteStore(db).close()  # create the schema once, before the race
    go = tmp_path / "go"
    runs = [(f"run-{i:02d}", 1000 + 7 * i) for i in range(RUNS)]

    procs = _start_writers(db, go, _split(runs, PROCESSES))
    stop = threading.Event()
    log = ReaderLog()
    reader = threading.Thread(target=_reader, args=(db, stop, log), daemon=True)
    started = time.monotonic()
    try:
        reader.start()
        reports = _release_and_collect(procs, go)
    finally:
        stop.set()
        reader.join(timeout=10)
        for p in procs:
            if p.poll() is None:
                p.kill()
    elapsed = time.monotonic() - started

    errors = [e for r in reports for e in r["errors"]]
    assert sum(r["locked"] for r in reports) == 0, errors
    assert errors == [], f"{len(errors)} runs failed, e.g. {errors[:3]}"
    assert sorted(rid for r in reports for rid in r["completed"]) == [rid for rid, _ in runs]
    assert log.errors == [], f"reader failed {len(log.errors)} times: {log.errors[:3]}"
    assert not [e for e in log.errors if "locked" in e]
    assert log.polls >= 3 and log.states_read > 0, (log, elapsed)

    store = SQLiteStore(db)
    try:
        app = chain_graph(store)
        for rid, seed in runs:
            run = store.get_run(rid)
            assert (run.status, run.head_step, run.error) == ("completed", CHAIN_LENGTH, None)
            assert app.get_state(rid) == chain_final(seed), rid
            writes = store.writes(rid)
            assert [(w.step, w.node) for w in writes] == [
                (i, f"c{i:02d}") for i in range(CHAIN_LENGTH)
            ], rid
            assert len(store.effects(rid)) == CHAIN_LENGTH, rid
        assert store.integrity_check() == "ok"
        wal = Path(f"{db}-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
        assert wal_size < WAL_LIMIT, f"WAL grew to {wal_size} bytes (checkpoint starvation)"
    finally:
        store.close()


def test_negative_control_deferred_begin_hits_database_is_locked(tmp_path: Path) -> None:
    """Same shape, smaller: 5 processes × 3 runs through a deferred-BEGIN store variant
    that reads before it writes. If this stops failing, the test above proves nothing."""
    db = tmp_path / "deferred.db"
    SQLiteStore(db).close()
    go = tmp_path / "go"
    runs = [(f"neg-{i:02d}", i) for i in range(15)]
    procs = _start_writers(db, go, _split(runs, PROCESSES), deferred=True)
    try:
        reports = _release_and_collect(procs, go, locks_expected=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sum(r["locked"] for r in reports) > 0, reports
