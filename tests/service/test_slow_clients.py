"""Clients that never finish a request (issue 16 item 10).

Real sockets against a real uvicorn server using ``flowstate serve``'s protocol
(``guarded_protocol``): a client that stalls in its headers, trickles them a byte at a
time, or announces a body it never sends is answered 408 and disconnected within the
deadline; beyond ``max_connections`` a new connection is answered 503 at once; ordinary
requests, keep-alive and long responses are untouched. (Before: 600 stalled connections
stayed open for over 70 s.)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from flowstate.service import ServerLimits, create_app, server_config

from .graphs import registry

LIMITS = ServerLimits(header_timeout=0.6, body_timeout=0.6, max_connections=8)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with _server(tmp_path, LIMITS) as u:
        yield u


@contextmanager
def _server(tmp_path: Path, limits: ServerLimits) -> Iterator[str]:
    app = create_app(registry(), db=str(tmp_path / "runs.db"))
    config = server_config(app, limits, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert t.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    t.join(timeout=15)


def _connect(url: str) -> socket.socket:
    host, port = url.split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def _read_all(s: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything until the server closes; and how long that took."""
    t0 = time.monotonic()
    s.settimeout(limit)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out, time.monotonic() - t0
        out += chunk


def test_stalled_headers_get_408_and_are_closed(url: str) -> None:
    s = _connect(url)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    out, took = _read_all(s)
    assert out.startswith(b"HTTP/1.1 408"), out
    assert b"headers did not arrive within 0.6 s" in out
    assert took < 5


def test_a_trickle_of_header_bytes_does_not_keep_the_connection(url: str) -> None:
    s = _connect(url)
    t0 = time.monotonic()
    closed = False
    for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
        try:
            s.sendall(bytes([b]))
        except OSError:
            closed = True
            break
        time.sleep(0.05)
        if time.monotonic() - t0 > 5:
            break
    if not closed:
        out, _ = _read_all(s)
        assert out.startswith(b"HTTP/1.1 408"), out
    assert time.monotonic() - t0 < 5  # closed at the absolute deadline, not kept alive


def test_a_body_that_never_comes_gets_408(url: str) -> None:
    s = _connect(url)
    s.sendall(
        b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"graph": '
    )
    out, took = _read_all(s)
    assert out.startswith(b"HTTP/1.1 408"), out
    assert b"body did not arrive" in out and took < 5


def test_a_silent_connection_is_closed_without_a_response(url: str) -> None:
    s = _connect(url)
    out, took = _read_all(s)
    assert out == b"" and took < 5


def test_connections_beyond_the_limit_get_503_and_normal_traffic_goes_on(url: str) -> None:
    idle = [_connect(url) for _ in range(LIMITS.max_connections)]
    time.sleep(0.1)
    extra = _connect(url)
    out, took = _read_all(extra)
    assert out.startswith(b"HTTP/1.1 503"), out
    assert took < 1.0
    for s in idle:
        s.close()
    deadline = time.monotonic() + 10
    while True:  # the server noticed the closes: a new client is served
        try:
            r = httpx.get(f"http://{url}/health", timeout=5)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_keep_alive_and_slow_responses_are_not_cut(url: str) -> None:
    with httpx.Client(base_url=f"http://{url}", timeout=10) as c:
        for _ in range(3):  # one connection, several requests, pauses past the deadline
            assert c.get("/health").status_code == 200
            time.sleep(0.3)
        r = c.post("/v1/tasks", json={"graph": "steps", "input": {"label": "x", "delay": 0.3}})
        assert r.status_code == 202, r.text
        tid = r.json()["id"]
        t0 = time.monotonic()
        with c.stream("GET", f"/v1/tasks/{tid}/events") as ev:  # a response of > 1 s
            text = "".join(ev.iter_text())
        assert "run_finished" in text and time.monotonic() - t0 > LIMITS.body_timeout


@pytest.mark.slow
def test_hundreds_of_stalled_connections_are_all_closed(tmp_path: Path) -> None:
    limits = ServerLimits(header_timeout=2.0, body_timeout=2.0, max_connections=1000)
    with _server(tmp_path, limits) as u:
        socks = [_connect(u) for _ in range(300)]
        for i, s in enumerate(socks):
            s.sendall(
                b"GET /health HTTP/1.1\r\n"
                if i % 2
                else b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{"
            )
        t0 = time.monotonic()
        for s in socks:
            out, _ = _read_all(s, limit=30)
            assert out.startswith(b"HTTP/1.1 408"), out
            s.close()
        assert time.monotonic() - t0 < 20
        assert httpx.get(f"http://{u}/health", timeout=5).status_code == 200
