"""A real uvicorn server on 127.0.0.1 (port 0) in a thread, and httpx clients for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from flowstate.service import create_app

from .graphs import CALLS_ENV, registry

ROOT = Path(__file__).resolve().parents[2]


class ThreadServer:
    """uvicorn serving ``app`` on a free 127.0.0.1 port, in a background thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    @property
    def service(self) -> Any:
        return self.app.state.service

    def client(self, token: str | None = None, timeout: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


@pytest.fixture
def calls_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "calls.db")
    monkeypatch.setenv(CALLS_ENV, path)
    return path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ThreadServer]]:
    """``serve(**create_app_kwargs)`` → a started ThreadServer (stopped at teardown)."""
    started: list[ThreadServer] = []

    def start(**kwargs: Any) -> ThreadServer:
        kwargs.setdefault("db", str(tmp_path / "runs.db"))
        graphs = kwargs.pop("graphs", None) or registry()
        s = ThreadServer(create_app(graphs, **kwargs)).__enter__()
        started.append(s)
        return s

    yield start
    for s in reversed(started):
        s.__exit__()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def subprocess_server(db: str, *args: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    """``flowstate serve tests.service.graphs:REGISTRY`` as a child process."""
    port = free_port()
    code = (
        "import sys; from flowstate.service import serve_command; "
        "serve_command(sys.argv[1], db=sys.argv[2], port=int(sys.argv[3]), "
        "max_concurrent_runs=int(sys.argv[4]), log_level='warning')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "tests.service.graphs:REGISTRY", db, str(port), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"server did not start: {err[-2000:]}")
        time.sleep(0.05)
    proc.url = url  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def wait_for(
    client: httpx.Client,
    task_id: str,
    statuses: tuple[str, ...] = ("completed",),
    timeout: float = 20.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/tasks/{task_id}").json()
        if body.get("status") in statuses:
            return body  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} still {body.get('status')} after {timeout}s")
        time.sleep(0.02)
