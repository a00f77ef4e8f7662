"""Item 0a of issue 20: every command that takes a database opens a ``postgresql://``
URL (``?schema=`` and the pool options included), through the one rule (``resolve_db``
→ ``open_store``), and so do ``flowstate serve`` and ``flowstate ui``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from flowstate.checkpoints import PostgresStore, open_store
from flowstate.cli import app
from flowstate.errors import ConfigError
from tests.service.conftest import free_port
from tests.store.conftest import pg_schema, require_postgres

ROOT = Path(__file__).resolve().parents[2]
PLAIN = "tests.cli_graphs:graph"


def invoke(*argv: str) -> Any:
    return CliRunner().invoke(app, list(argv))


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWSTATE_DB", raising=False)
    monkeypatch.delenv("FLOWSTATE_GRAPH", raising=False)
    return f"{require_postgres()}?schema={pg_schema(tmp_path, 'cli')}&pool_max_size=2"


def test_every_command_takes_a_postgres_url(url: str, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CLI_TEST_FAIL", "1")
    r = invoke("run", PLAIN, "--db", url, "--run-id", "p1", "-q", "-v")
    assert r.exit_code == 1 and "b is broken today" in r.output
    first = r.stderr.splitlines()[0]  # the URL as libpq gets it, schema named apart
    assert "(schema fs_" in first and "pool_max_size" not in first
    assert f"--db {url}" in r.stderr  # the resume hint works as printed
    r = invoke("runs", "--db", url)
    assert r.exit_code == 0 and "p1" in r.stdout and "failed" in r.stdout
    monkeypatch.delenv("CLI_TEST_FAIL")
    r = invoke("resume", "p1", "--graph", PLAIN, "--db", url, "-q")
    assert r.exit_code == 0, r.output
    r = invoke("show", "p1", "--db", url, "--graph", PLAIN)
    assert r.exit_code == 0 and '"n": 11' in r.stdout
    r = invoke("replay", "p1", "--db", url, "--graph", PLAIN)
    assert r.exit_code == 0, r.output
    r = invoke(
        "fork", "p1", "--at", "1", "--set", '{"n": 100}', "--graph", PLAIN, "--db", url, "-q"
    )
    assert r.exit_code == 0, r.output
    r = invoke("doctor", "--db", url)
    assert r.exit_code == 0, r.output
    # $FLOWSTATE_DB may be a URL too
    monkeypatch.setenv("FLOWSTATE_DB", url)
    r = invoke("runs", "-v")
    assert r.exit_code == 0 and "p1" in r.stdout and "$FLOWSTATE_DB" in r.stderr
    r = invoke("prune", "--older-than", "0m", "--status", "completed")
    assert r.exit_code == 0, r.output
    r = invoke("runs")
    assert "p1" not in r.stdout
    r = invoke("graph", PLAIN)  # opens no database at all
    assert r.exit_code == 0 and "step_a" in r.stdout
    assert os.listdir(tmp_path) == []  # no SQLite file was created on the way


def test_bad_pool_options_in_a_url_name_the_culprit() -> None:
    dsn = require_postgres()
    with pytest.raises(ConfigError, match="pool_max_size='lots'"):
        open_store(f"{dsn}?pool_max_size=lots")
    with pytest.raises(ConfigError, match="max_size"):
        open_store(f"{dsn}?pool_max_size=0")
    r = invoke("runs", "--db", f"{dsn}?pool_min_size=x")
    assert r.exit_code == 1 and "pool_min_size" in r.stderr


def test_url_options_reach_the_store(tmp_path: Path) -> None:
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "opts")
    s = open_store(f"{dsn}?schema={schema}&pool_min_size=0&pool_max_size=3&connect_timeout=5")
    assert isinstance(s, PostgresStore)
    assert (s.schema, s.min_size, s.max_size) == (schema, 0, 3)
    assert "connect_timeout=5" in s.dsn and "schema" not in s.dsn and "pool" not in s.dsn
    s.close()


def _serve(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowstate.cli", *argv, "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{argv[0]} did not start: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.1)


@pytest.mark.slow
def test_serve_and_ui_take_a_postgres_url(url: str) -> None:
    """The real commands in their own processes (two server start-ups: slow tier)."""
    serve, base = _serve(["serve", "tests.service.graphs:REGISTRY", "--db", url])
    ui: subprocess.Popen[str] | None = None
    try:
        made = httpx.post(
            f"{base}/v1/tasks", json={"graph": "echo", "input": {"text": "hi"}}, timeout=30
        )
        assert made.status_code == 202, made.text
        task = made.json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/v1/tasks/{task}", timeout=10).json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ui, ui_base = _serve(["ui", "--db", url])
        page = httpx.get(f"{ui_base}/v1/tasks", timeout=10)
        assert page.status_code == 200 and task in page.text
    finally:
        for p in (serve, ui):
            if p is not None:
                p.terminate()
                p.wait(30)
    assert serve.stderr is not None and "pool_max_size" not in serve.stderr.read()


def test_a_service_and_a_read_only_inspector_share_a_postgres_url(url: str) -> None:
    """What ``serve`` and ``ui`` build, in this process: a task created through one is
    listed by the other."""
    from flowstate.service import GraphRegistry, create_app
    from tests.service.conftest import ThreadServer
    from tests.service.graphs import echo_graph

    with ThreadServer(create_app(GraphRegistry([echo_graph()]), db=url)) as server:
        client = server.client(timeout=30)
        made = client.post("/v1/tasks", json={"graph": "echo", "input": {"text": "hi"}})
        assert made.status_code == 202, made.text
        task = made.json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/tasks/{task}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    inspector = create_app(GraphRegistry(), db=url, read_only=True)
    with ThreadServer(inspector) as server:
        page = server.client().get("/v1/tasks")
    assert page.status_code == 200 and task in page.text
