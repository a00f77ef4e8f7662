"""``flowstate ui`` as a user starts it: a real process on 127.0.0.1 over a database that
another process writes. Read-only without ``--graphs`` (and live by polling the store);
with ``--graphs`` the actions are there."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowstate.checkpoints import SQLiteStore

from .graphs import registry

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def flowstate_ui(*args: str) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FLOWSTATE_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowstate.cli", "ui", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # imports are slow on a loaded machine
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.communicate(timeout=5)[0] if proc.poll() is not None else ""
                raise AssertionError(f"flowstate ui did not start: {out}")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_ui_refuses_a_missing_database(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flowstate.cli", "ui", "--db", str(tmp_path / "none.db")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert (
        "FS400" in out.stderr and "no checkpoint database at" in out.stderr and "--db" in out.stderr
    )


def test_read_only_ui_follows_a_run_another_process_executes(
    tmp_path: Path, open_page: Any
) -> None:
    db = tmp_path / "runs.db"
    graph = registry().bind(SQLiteStore(str(db)))["waiter"]
    started = threading.Event()
    box: dict[str, Any] = {}

    def execute() -> None:
        async def go() -> None:
            def seen(e: Any) -> None:
                box.setdefault("run_id", getattr(e, "run_id", None))
                started.set()

            # runs until the test cancels it: a loaded machine may be slow to start the UI
            box["result"] = await graph.run({"seconds": 0.2, "limit": 10_000}, on_event=seen)

        asyncio.run(go())

    with flowstate_ui("--db", str(db)) as url:
        writer = threading.Thread(target=execute, daemon=True)
        writer.start()
        assert started.wait(20)
        rid = box["run_id"]
        try:
            p = open_page(url)
            page = p.page
            page.set_default_timeout(15_000)
            page.goto(url + "/ui/")  # no token: no login
            page.wait_for_selector(f"#runs tr[data-run='{rid}']")
            page.click(f"#runs tr[data-run='{rid}'] a")
            page.wait_for_selector("#live")
            assert page.locator("#read-only").is_visible()
            assert page.locator("#act-pause").count() == 0  # no actions without the code
            rows = page.locator("#timeline tr.activation")
            start = rows.count()
            deadline = time.monotonic() + 15
            while rows.count() < start + 2:  # polled from the store, no reload
                assert time.monotonic() < deadline, "the page did not follow the run"
                time.sleep(0.1)
            p.shot("14-read-only-live")
            # the same API refuses actions, with the reason and the fix
            r = httpx.post(f"{url}/v1/tasks/{rid}/pause")
            assert r.status_code == 403 and "--graphs" in r.json()["detail"]
            assert p.errors == []
        finally:
            # as another process would: the executing loop sees it at its next node boundary
            SQLiteStore(str(db)).send_signal(rid, "cancel")
            writer.join(timeout=20)


def test_ui_with_graphs_can_act(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    g = registry().bind(SQLiteStore(str(db)))["review"]
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API may hold this loop
        rid = pool.submit(asyncio.run, g.run({"topic": "newts"})).result().run_id
    with flowstate_ui("--db", str(db), "--graphs", "tests.inspector.graphs:REGISTRY") as url:
        o = httpx.get(f"{url}/v1/tasks/{rid}/overview").json()
        assert o["actions"] is True and o["status"] == "paused"
        r = httpx.post(f"{url}/v1/tasks/{rid}/resume", json={"value": True}, timeout=30)
        assert r.status_code == 202
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/v1/tasks/{rid}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        rep = httpx.post(f"{url}/v1/tasks/{rid}/replay", timeout=30).json()
        assert rep["identical"] is True


@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_ui_needs_a_token_off_loopback(tmp_path: Path, host: str) -> None:
    db = tmp_path / "runs.db"
    SQLiteStore(str(db))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FLOWSTATE_TOKEN", None)
    out = subprocess.run(
        [sys.executable, "-m", "flowstate.cli", "ui", "--db", str(db), "--host", host],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "without a token" in out.stderr
