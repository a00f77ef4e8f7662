"""One database rule for every command: --db, else the --graph's own store, else
$FLOWSTATE_DB, else ./flowstate.db; postgresql:// URLs wherever a database is; -v says
which database was used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowstate.cli import app
from tests.store.conftest import pg_schema, require_postgres

OWN = "tests.cli_graphs:stored"  # compiled with store="graph-own.db" (relative)
PLAIN = "tests.cli_graphs:graph"  # a GraphBuilder: no store of its own


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWSTATE_DB", raising=False)
    monkeypatch.delenv("FLOWSTATE_GRAPH", raising=False)
    return tmp_path


def invoke(*argv: str):
    return CliRunner().invoke(app, list(argv))


def test_a_graph_that_names_its_store_is_found_by_every_command(cwd, monkeypatch):
    """The issue's trip: run writes to the graph's own store; resume, show, runs, replay,
    fork, doctor and prune must find it from --graph alone."""
    monkeypatch.setenv("CLI_TEST_FAIL", "1")
    r = invoke("run", OWN, "--run-id", "r1", "-q", "-v")
    assert r.exit_code == 1
    assert "database: graph-own.db (the store of graph tests.cli_graphs:stored)" in r.stderr
    assert (cwd / "graph-own.db").exists() and not (cwd / "flowstate.db").exists()
    monkeypatch.setenv("CLI_TEST_FAIL", "0")
    r = invoke("resume", "r1", "--graph", OWN, "-q", "-v")
    assert r.exit_code == 0, r.output
    assert "database: graph-own.db" in r.stderr
    for argv in (
        ("runs", "--graph", OWN),
        ("show", "r1", "--graph", OWN),
        ("replay", "r1", "--graph", OWN),
        ("fork", "r1", "--at", "1", "--graph", OWN, "-q"),
        ("doctor", "--graph", OWN),
        ("prune", "--older-than", "30d", "--graph", OWN, "--dry-run"),
    ):
        r = invoke(*argv, "-v")
        assert r.exit_code == 0, (argv, r.output)
        assert "database: graph-own.db (the store of graph" in r.stderr, argv
    assert "r1" in invoke("runs", "--graph", OWN).stdout
    assert not (cwd / "flowstate.db").exists()


def test_db_overrides_the_graph_store_then_env_then_default(cwd, monkeypatch):
    r = invoke("run", OWN, "--db", "other.db", "--run-id", "a", "-q", "-v")
    assert r.exit_code == 0 and "database: other.db (--db)" in r.stderr
    assert not (cwd / "graph-own.db").exists()
    r = invoke("show", "a", "--graph", OWN)  # the graph's store does not hold run a
    assert r.exit_code == 1 and "FS402" in r.stderr and "graph-own.db" in r.stderr
    r = invoke("show", "a", "--graph", OWN, "--db", "other.db")
    assert r.exit_code == 0, r.output
    r = invoke("run", PLAIN, "--run-id", "b", "-q", "-v")
    assert "database: flowstate.db (the default)" in r.stderr
    monkeypatch.setenv("FLOWSTATE_DB", str(cwd / "env.db"))
    r = invoke("run", PLAIN, "--run-id", "c", "-q", "-v")
    assert f"database: {cwd / 'env.db'} ($FLOWSTATE_DB)" in r.stderr
    r = invoke("runs", "-v")
    assert "c" in r.stdout and "($FLOWSTATE_DB)" in r.stderr


def test_reading_a_missing_database_names_the_rule_and_creates_nothing(cwd):
    for argv in (("runs",), ("show", "x"), ("doctor",), ("resume", "x", "--graph", PLAIN)):
        r = invoke(*argv)
        assert r.exit_code == 1 and "FS402" in r.stderr, (argv, r.output)
        assert "(chosen by the default)" in r.stderr
    assert not (cwd / "flowstate.db").exists()


def test_help_states_the_true_default(cwd):
    import re

    for cmd in ("run", "resume", "runs", "show", "replay", "fork", "prune", "doctor"):
        out = " ".join(re.sub(r"[│╭╮╰╯─]", " ", invoke(cmd, "--help").stdout).split())
        assert (
            "Default: the store the graph was compiled with, else $FLOWSTATE_DB, else "
            "./flowstate.db." in out
        ), cmd


def test_postgres_urls_work_wherever_a_database_does(cwd, tmp_path):
    dsn = require_postgres()
    url = f"{dsn}{'&' if '?' in dsn else '?'}schema={pg_schema(tmp_path, 'cli')}"
    r = invoke("run", PLAIN, "--db", url, "--run-id", "pg1", "-q", "-v")
    assert r.exit_code == 0, r.output
    assert "(schema fs_" in r.stderr
    r = invoke("runs", "--db", url)
    assert r.exit_code == 0 and "pg1" in r.stdout
    r = invoke("show", "pg1", "--db", url, "--graph", PLAIN)
    assert r.exit_code == 0 and '"n": 11' in r.stdout
    r = invoke("replay", "pg1", "--db", url, "--graph", PLAIN)
    assert r.exit_code == 0, r.output
    r = invoke("doctor", "--db", url)
    assert r.exit_code == 0, r.output
    assert not Path("flowstate.db").exists() and os.listdir(cwd) == []


def test_the_service_takes_a_postgres_url(tmp_path):
    from fastapi.testclient import TestClient

    from flowstate.service import create_app
    from tests.cli_graphs import REGISTRY

    dsn = require_postgres()
    url = f"{dsn}{'&' if '?' in dsn else '?'}schema={pg_schema(tmp_path, 'svc')}"
    with TestClient(create_app(REGISTRY, db=url)) as client:
        made = client.post("/v1/tasks", json={"graph": "counter", "input": {"n": 1}})
        assert made.status_code == 202, made.text
    r = invoke("runs", "--db", url)
    assert made.json()["id"] in r.stdout
