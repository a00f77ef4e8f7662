"""One writer per run on Postgres with real processes (the Postgres twin of
tests/lifecycle/test_ownership.py; the store-level lease contract is
test_leases_contract.py).

Each child (``_pg_owner_child.py``) opens its own ``PostgresStore`` on the test's schema and
runs or resumes the slow chain of tests/lifecycle/owner_graphs.py, which logs every node
execution to a side file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from .conftest import pg_schema, require_postgres

CHILD = str(Path(__file__).resolve().parent / "_pg_owner_child.py")
CHAIN = 12  # slow_chain's default length


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    dsn = require_postgres()
    with psycopg.connect(dsn, autocommit=True) as admin:
        yield {
            "dsn": dsn,
            "schema": pg_schema(tmp_path, "own"),
            "admin": admin,
            "calls": tmp_path / "chain.calls",
            "procs": [],
        }


@pytest.fixture(autouse=True)
def _reap(env: dict[str, Any]) -> Iterator[None]:
    """No child outlives its test (its schema is dropped after it)."""
    yield
    for p in env["procs"]:
        if p.poll() is None:
            p.kill()
        p.wait()


def _spawn(env: dict[str, Any], mode: str, ttl: float = 30.0) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, CHILD, env["dsn"], env["schema"], str(env["calls"]), "r", mode, str(ttl)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    env["procs"].append(p)
    return p


def _q(env: dict[str, Any], template: str, table: str) -> list[tuple[Any, ...]]:
    q = sql.SQL(template).format(t=sql.Identifier(env["schema"], table))
    return env["admin"].execute(q).fetchall()


def _writes(env: dict[str, Any]) -> int:
    try:
        return int(_q(env, "SELECT count(*) FROM {t}", "writes")[0][0])
    except psycopg.errors.UndefinedTable:
        return 0  # the first child has not created the schema yet


def _wait_writes(env: dict[str, Any], n: int, timeout: float = 20) -> None:
    t = time.time() + timeout
    while _writes(env) < n:
        assert time.time() < t, "the run made no progress"
        time.sleep(0.02)


def _no_duplicate_writes(env: dict[str, Any]) -> None:
    rows = _q(env, 'SELECT "step", "task_path", "node" FROM {t} ORDER BY "step"', "writes")
    assert len(rows) == len({(s, t) for s, t, _ in rows}) == CHAIN
    assert [n for _, _, n in rows] == [f"n{i}" for i in range(CHAIN)]


def _calls(env: dict[str, Any]) -> Counter[str]:
    return Counter(line.split()[0] for line in env["calls"].read_text().splitlines())


def _stop_outside_a_transaction(env: dict[str, Any], p: subprocess.Popen[str]) -> None:
    """SIGSTOP ``p`` while its session holds no transaction (so no row lock): a process
    frozen inside a write would block a takeover on the run row until it is woken."""
    for _ in range(100):
        os.kill(p.pid, signal.SIGSTOP)
        time.sleep(0.05)  # let the server finish whatever was already sent
        states = [
            r[0]
            for r in env["admin"]
            .execute(
                "SELECT state FROM pg_stat_activity WHERE application_name = %s",
                [f"fs_owner_{p.pid}"],
            )
            .fetchall()
        ]
        if states and all(s == "idle" for s in states):  # the pool may hold several
            return
        os.kill(p.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"could not stop {p.pid} outside a transaction")


def test_two_processes_racing_to_resume_a_crashed_run_on_postgres(env: dict[str, Any]) -> None:
    p = _spawn(env, "run")
    _wait_writes(env, 3)
    os.kill(p.pid, signal.SIGKILL)  # its lease is unexpired, but its pid is dead
    p.wait()
    a, b = _spawn(env, "resume"), _spawn(env, "resume")
    results = {}
    for q in (a, b):
        out, err = q.communicate(timeout=30)
        assert out, err
        results[q.pid] = (q.returncode, json.loads(out))
    assert sorted(code for code, _ in results.values()) == [0, 4], results
    winner = next(pid for pid, (code, _) in results.items() if code == 0)
    loser = next(r for code, r in results.values() if code == 4)
    assert results[winner][1] == {"outcome": "completed", "n": CHAIN}
    assert loser["outcome"] == "owned" and f":{winner}:" in loser["owner"]  # names the winner
    _no_duplicate_writes(env)
    # only the activation in flight at the kill may have run twice
    assert sum(n - 1 for n in _calls(env).values()) <= 1
    owner, epoch, until = _q(env, 'SELECT "owner", "epoch", "lease_until" FROM {t}', "runs")[0]
    assert (owner, epoch, until) == (None, 2, None)  # the winner took epoch 2, then released


def test_a_stopped_owner_loses_the_run_and_its_commits_are_fenced_out_on_postgres(
    env: dict[str, Any],
) -> None:
    ttl = 1.0
    p = _spawn(env, "run", ttl)
    _wait_writes(env, 2)
    _stop_outside_a_transaction(env, p)  # a zombie owner: alive, but not heartbeating
    try:
        time.sleep(ttl + 0.3)
        q = _spawn(env, "resume", ttl)
        out, err = q.communicate(timeout=30)
        assert q.returncode == 0, err
        assert json.loads(out) == {"outcome": "completed", "n": CHAIN}
        committed = _writes(env)
    finally:
        os.kill(p.pid, signal.SIGCONT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 5, (out, err)  # the former owner's commit was rejected
    assert json.loads(out)["outcome"] == "lease_lost"
    assert _writes(env) == committed == CHAIN
    _no_duplicate_writes(env)
