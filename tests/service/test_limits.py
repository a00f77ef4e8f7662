"""Auth before any work, bounded bodies (RELIABILITY.md R9, §2.6 item 7)."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from flowstate.service._cli import serve_command

TOKEN = "s3cret-token"
MiB = 1 << 20


def _big(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    block = b"x" * chunk
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block if n == chunk else block[:n]
        sent += n


def test_bearer_token_is_required_before_any_work(serve) -> None:
    s = serve(token=TOKEN)
    anon = s.client()
    r = anon.post("/v1/tasks", json={"graph": "steps", "input": {}})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"].startswith("application/problem+json")
    r = s.client(token="wrong").get("/v1/tasks")
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert anon.get("/v1/tasks/abc").status_code == 401
    assert anon.get("/openapi.json").status_code == 401
    r = anon.get("/v1/tasks", headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401
    # checked before the body is read: a 100 MiB upload without a token is refused at once
    t0 = time.monotonic()
    r = anon.post(
        "/v1/tasks",
        content=_big(100 * MiB),
        headers={"Content-Length": str(100 * MiB), "Content-Type": "application/json"},
    )
    assert r.status_code == 401 and time.monotonic() - t0 < 2
    assert s.service.store.list_runs() == []
    # health and readiness stay open for probes
    assert anon.get("/health").status_code == 200
    assert anon.get("/ready").status_code == 200
    ok = s.client(token=TOKEN)
    assert ok.post("/v1/tasks", json={"graph": "steps", "input": {}}).status_code == 202
    spec = ok.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "401" in spec["paths"]["/v1/tasks"]["post"]["responses"]


def test_body_limit_exact(serve) -> None:
    limit = 4096
    s = serve(max_body_bytes=limit)
    c = s.client()

    def body(size: int) -> bytes:
        base = {"graph": "steps", "input": {"label": ""}}
        pad = size - len(json.dumps(base, separators=(",", ":")))
        base["input"]["label"] = "y" * pad
        raw = json.dumps(base, separators=(",", ":")).encode()
        assert len(raw) == size
        return raw

    hdr = {"Content-Type": "application/json"}
    assert c.post("/v1/tasks", content=body(limit - 1), headers=hdr).status_code == 202
    assert c.post("/v1/tasks", content=body(limit), headers=hdr).status_code == 202
    r = c.post("/v1/tasks", content=body(limit + 1), headers=hdr)
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")
    # streamed without Content-Length: counted as it arrives
    r = c.post("/v1/tasks", content=iter([body(limit + 1)]), headers=hdr)
    assert r.status_code == 413
    assert len(s.service.store.list_runs()) == 2
    r = c.post("/v1/tasks/abc/resume", content=b" " * (limit + 1), headers=hdr)
    assert r.status_code == 413


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_100_mib_body_is_refused_fast_with_bounded_memory(serve, declared: bool) -> None:
    s = serve()  # the default limit, 1 MiB
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(100 * MiB)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        t0 = time.monotonic()
        with httpx.Client(base_url=s.url, timeout=10) as c:
            r = c.post("/v1/tasks", content=_big(100 * MiB), headers=headers)
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    assert elapsed < 2.0
    assert peak - base < 64 * MiB
    assert s.client().get("/health").status_code == 200


def test_serve_refuses_a_public_interface_without_a_token(monkeypatch, capsys) -> None:

    from flowstate.errors import CLIError, GraphLoadError

    monkeypatch.delenv("FLOWSTATE_TOKEN", raising=False)
    with pytest.raises(CLIError, match="FLOWSTATE_TOKEN"):  # the CLI prints it in one line
        serve_command("tests.service.graphs:REGISTRY", host="0.0.0.0")
    with pytest.raises(GraphLoadError):
        serve_command("tests.service.graphs:NOPE")
