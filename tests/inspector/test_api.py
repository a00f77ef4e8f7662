"""The inspector's API: login and CSRF, the new endpoints and their errors, the read-only
mode, and list paging and filters over many runs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flowstate.checkpoints import RunRecord, SQLiteStore, StepRecord
from flowstate.service import GraphRegistry, create_app
from flowstate.service._inspect import json_diff
from flowstate.service._svg import graph_svg
from flowstate.service.ui import COOKIE

from .conftest import TOKEN
from .graphs import registry

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wait(client: TestClient, tid: str, want: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get(f"/v1/tasks/{tid}", headers=AUTH).json()
        if doc["status"] in want or time.monotonic() > deadline:
            return doc
        time.sleep(0.02)


@pytest.fixture
def client(tmp_path: Path) -> Any:
    app = create_app(registry(), db=str(tmp_path / "runs.db"), token=TOKEN)
    with TestClient(app) as c:
        yield c


def _session(client: TestClient) -> str:
    r = client.post("/ui/login", data={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attr in cookie
    return cookie.split(";", 1)[0].split("=", 1)[1]


def test_login_cookie_stands_for_the_token_and_actions_need_csrf(client: TestClient) -> None:
    tid = client.post(
        "/v1/tasks", json={"graph": "review", "input": {"topic": "owls"}}, headers=AUTH
    ).json()["id"]
    wait(client, tid, {"paused"})
    # not logged in: the page sends the browser to the login form; the API says 401
    r = client.get("/ui/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert client.get("/v1/tasks").status_code == 401
    assert client.get("/ui/session").status_code == 401
    # a wrong token: back to the form with an error, no cookie
    r = client.post("/ui/login", data={"token": "nope"}, follow_redirects=False)
    assert r.headers["location"] == "/ui/login?error=1" and "set-cookie" not in r.headers
    session = _session(client)
    jar = {"Cookie": f"{COOKIE}={session}"}
    page = client.get("/ui/", headers=jar)
    assert (
        page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    )
    assert client.get("/v1/tasks", headers=jar).json()["items"][0]["id"] == tid
    assert client.get(f"/v1/tasks/{tid}/overview", headers=jar).status_code == 200
    # a state-changing request on the cookie alone is refused without the CSRF header
    r = client.post(f"/v1/tasks/{tid}/cancel", headers=jar)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    r = client.post(f"/v1/tasks/{tid}/cancel", headers={**jar, "X-CSRF-Token": "0" * 40})
    assert r.status_code == 403
    csrf = client.get("/ui/session", headers=jar).json()["csrf"]
    r = client.post(f"/v1/tasks/{tid}/cancel", headers={**jar, "X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # another site's request is refused, whatever it carries
    evil = {"Origin": "https://evil.example", "X-CSRF-Token": csrf}
    r = client.post(f"/v1/tasks/{tid}/resume", headers={**jar, **evil})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = client.post(f"/v1/tasks/{tid}/resume", headers={**AUTH, **evil})
    assert r.status_code == 403
    r = client.post("/ui/login", data={"token": TOKEN}, headers=evil, follow_redirects=False)
    assert r.status_code == 403
    # same origin is fine
    r = client.post(
        f"/v1/tasks/{tid}/resume",
        headers={**jar, "X-CSRF-Token": csrf, "Origin": "http://testserver"},
        json={"value": True},
    )
    assert r.status_code == 202
    # a forged or expired session is no session
    forged = session.rsplit(".", 1)[0] + "." + "0" * 64
    assert client.get("/v1/tasks", headers={"Cookie": f"{COOKIE}={forged}"}).status_code == 401
    # logging out clears the cookie
    r = client.post("/ui/logout", headers=jar, follow_redirects=False)
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]


def test_sessions_expire_and_end_with_the_token() -> None:
    from flowstate.service.ui import SESSION_SECONDS, InspectorGate

    gate = InspectorGate(None, token="one")  # type: ignore[arg-type]
    old = gate.new_session(now=time.time() - SESSION_SECONDS - 1)
    assert not gate.valid_session(old)
    fresh = gate.new_session()
    assert gate.valid_session(fresh)
    assert not InspectorGate(None, token="two").valid_session(fresh)  # type: ignore[arg-type]


def test_inspector_endpoints(client: TestClient) -> None:
    tid = client.post(
        "/v1/tasks", json={"graph": "review", "input": {"topic": "owls"}}, headers=AUTH
    ).json()["id"]
    wait(client, tid, {"paused"})
    o = client.get(f"/v1/tasks/{tid}/overview", headers=AUTH).json()
    assert o["status"] == "paused" and o["activations"] == 3
    # the totals, and per model (the LLM layer's `input_tokens@model` keys repeat them)
    assert {k: v for k, v in o["tokens"].items() if "@" not in k} == {
        "input_tokens": 120,
        "output_tokens": 30,
    }
    assert o["tokens"]["input_tokens@scripted"] == 120
    assert o["cost_usd"] == pytest.approx((120 * 3 + 30 * 15) / 1e6)
    nodes = {n["name"]: (n["status"], n["visits"]) for n in o["nodes"]}
    assert nodes == {
        "research": ("ran", 1),
        "write": ("ran", 1),
        "polish": ("ran", 1),
        "approve": ("interrupted", 0),
    }
    assert 'data-node="approve" data-status="interrupted"' in o["svg"]
    assert o["mermaid"].startswith("flowchart TD")
    (intr,) = o["interrupts"]
    assert intr["id"] == "3:approve:0" and intr["payload"]["question"] == "Publish this draft?"
    assert o["links"] == [
        {"id": f"{tid}/2/polish", "relation": "subgraph", "status": "completed", "step": 2}
    ]
    h = client.get(f"/v1/tasks/{tid}/history?start=1&limit=2", headers=AUTH).json()
    assert [(a["step"], a["node"]) for a in h["items"]] == [(1, "write"), (2, "polish")]
    assert h["items"][0]["effects"] == 1 and h["items"][1]["child_run"] == f"{tid}/2/polish"
    assert h["next_start"] == 3
    s = client.get(f"/v1/tasks/{tid}/state?step=2", headers=AUTH).json()
    assert s["exact"] and s["state"]["rounds"] == 1
    assert {d["path"]: d["after"] for d in s["diff"]} == {
        "draft": "A 7-word draft on owls",
        "rounds": 1,
    }
    e = client.get(f"/v1/tasks/{tid}/effects?step=0&task_path=research", headers=AUTH).json()
    assert e["items"][0]["kind"] == "llm"
    assert e["items"][0]["response"]["text"].startswith("Three facts about owls")
    # a subgraph run, addressed by its path id
    c = client.get(f"/v1/tasks/{tid}/2/polish/overview", headers=AUTH).json()
    assert c["links"][0]["relation"] == "subgraph_parent" and c["actions"] is False
    # errors: the same problem documents as every endpoint
    r = client.get(f"/v1/tasks/{tid}/state?step=99", headers=AUTH)
    assert r.status_code == 409 and "steps 0..3" in r.json()["detail"]
    assert client.get("/v1/tasks/nope/overview", headers=AUTH).status_code == 404
    r = client.post(f"/v1/tasks/{tid}/pause", headers=AUTH)
    assert r.status_code == 409 and "only a running task" in r.json()["detail"]
    r = client.post(f"/v1/tasks/{tid}/fork", json={"at": 9}, headers=AUTH)
    assert r.status_code == 409 and "cannot fork at step 9" in r.json()["detail"]
    r = client.post(
        f"/v1/tasks/{tid}/fork", json={"at": 1, "update": {"rounds": "x"}}, headers=AUTH
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "update"]
    r = client.post(f"/v1/tasks/{tid}/fork", json={"at": "1"}, headers=AUTH)
    assert r.status_code == 422  # strict JSON, as every body
    r = client.post(
        f"/v1/tasks/{tid}/fork", json={"at": 1, "update": {"topic": "bats"}}, headers=AUTH
    )
    assert r.status_code == 202
    fork = wait(client, r.json()["id"], {"paused"})
    assert fork["state"]["topic"] == "bats" and fork["state"]["draft"] == "A 7-word draft on bats"
    links = client.get(f"/v1/tasks/{tid}/overview", headers=AUTH).json()["links"]
    assert {"id": fork["id"], "relation": "fork", "status": "paused", "step": 1} in links
    rep = client.post(f"/v1/tasks/{tid}/replay", headers=AUTH).json()
    assert rep["identical"] and rep["recorded_status"] == "paused"


def test_attempts_and_a_failed_node(client: TestClient) -> None:
    tid = client.post("/v1/tasks", json={"graph": "shaky", "input": {}}, headers=AUTH).json()["id"]
    assert wait(client, tid, {"failed"})["status"] == "failed"
    o = client.get(f"/v1/tasks/{tid}/overview", headers=AUTH).json()
    assert "fragile is broken" in o["error"]
    assert {n["name"]: (n["status"], n["visits"]) for n in o["nodes"]} == {
        "shaky": ("ran", 1),
        "fragile": ("failed", 0),
    }
    (a,) = client.get(f"/v1/tasks/{tid}/history", headers=AUTH).json()["items"]
    assert (a["node"], a["attempts"]) == ("shaky", 2)  # one failed attempt, then the commit


def test_an_interrupt_inside_a_subgraph_is_answered_from_the_parent(client: TestClient) -> None:
    tid = client.post("/v1/tasks", json={"graph": "nested", "input": {}}, headers=AUTH).json()["id"]
    wait(client, tid, {"paused"})
    o = client.get(f"/v1/tasks/{tid}/overview", headers=AUTH).json()
    (i,) = [i for i in o["interrupts"] if not i["answered"]]
    assert i["id"] == "0:inner/0:ask:0" and i["node"] == "ask"
    assert {n["name"]: n["status"] for n in o["nodes"]} == {"inner": "interrupted"}
    r = client.post(f"/v1/tasks/{tid}/resume", json={"answers": {i["id"]: "Ada"}}, headers=AUTH)
    assert r.status_code == 202
    assert wait(client, tid, {"completed"})["state"]["answer"] == "Ada"


def test_pause_stops_a_running_task_at_a_node_boundary(client: TestClient) -> None:
    tid = client.post(
        "/v1/tasks", json={"graph": "waiter", "input": {"seconds": 0.05}}, headers=AUTH
    ).json()["id"]
    wait(client, tid, {"running"})
    time.sleep(0.2)
    r = client.post(f"/v1/tasks/{tid}/pause", headers=AUTH)
    assert r.status_code == 202 and r.json()["status"] == "paused"
    detail = client.get(f"/v1/tasks/{tid}", headers=AUTH).json()
    assert detail["reason"] == "pause requested"
    ticks = len(detail["state"]["ticks"])
    time.sleep(0.3)
    assert len(client.get(f"/v1/tasks/{tid}", headers=AUTH).json()["state"]["ticks"]) == ticks
    assert client.post(f"/v1/tasks/{tid}/resume", headers=AUTH).status_code == 202
    assert client.post(f"/v1/tasks/{tid}/cancel", headers=AUTH).json()["status"] == "cancelled"


def test_openapi_documents_the_inspector_endpoints(client: TestClient) -> None:
    doc = client.get("/openapi.json", headers=AUTH).json()
    ops = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    assert {
        "task_overview",
        "task_history",
        "task_state",
        "task_effects",
        "pause_task",
        "fork_task",
        "replay_task",
    } <= ops
    assert "/v1/tasks/{run_id}/history" in doc["paths"]


def _run_in_thread_db(path: Path) -> tuple[str, str]:
    """A completed review run and a run left 'running' (as a crash leaves it)."""
    reg = registry().bind(SQLiteStore(str(path)))
    g = reg["review"]

    async def go() -> str:
        r = await g.run({"topic": "moths"})
        r = await g.resume(r.run_id, value=True)
        return r.run_id

    done = asyncio.run(go())
    store = SQLiteStore(str(path))
    run = store.get_run(done)
    crashed = run.model_copy(update={"id": "crashed1", "status": "running"})
    step0 = store.get_step(done, 0)
    assert step0 is not None
    store.create_run(crashed, step0.model_copy(update={"run_id": crashed.id}))
    return done, "crashed1"


def test_read_only_inspector_reads_everything_and_acts_on_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # snapshots as for a large state (none between step 0 and 1 MiB of updates): without
    # the graph's code the inspector then shows the updates it cannot fold
    monkeypatch.setattr("flowstate.engine._step.SNAPSHOT_SMALL_BYTES", 0)
    db = tmp_path / "runs.db"
    done, crashed = _run_in_thread_db(db)
    app = create_app(GraphRegistry(), db=str(db), read_only=True)
    with TestClient(app) as c:
        assert {t["id"] for t in c.get("/v1/tasks").json()["items"]} == {done, crashed}
        o = c.get(f"/v1/tasks/{done}/overview").json()
        assert o["actions"] is False and o["activations"] == 4
        assert {n["name"]: n["status"] for n in o["nodes"]}["approve"] == "ran"
        s = c.get(f"/v1/tasks/{done}/state?step=2").json()
        assert s["exact"] is False and s["snapshot_step"] == 0  # no reducers without code
        assert [u["node"] for u in s["pending_updates"]] == ["research", "write"]
        assert [d["path"] for d in s["diff"]] == ["draft", "rounds"]
        for action in ("pause", "cancel", "resume", "replay"):
            r = c.post(f"/v1/tasks/{done}/{action}")
            assert r.status_code == 403 and "--graphs" in r.json()["detail"], action
        r = c.post(f"/v1/tasks/{done}/fork", json={"at": 0})
        assert r.status_code == 403
        assert c.post("/v1/tasks", json={}).status_code == 405
        assert c.get("/ui/").status_code == 200  # no token: no login
        # nothing was resumed at startup: the crashed run is still as it was left
        assert c.get(f"/v1/tasks/{crashed}").json()["status"] == "running"


def test_list_pages_filters_by_time_and_counts(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "runs.db"))
    t0 = 1_700_000_000.0
    for i in range(1_200):
        at = t0 + i // 3  # three runs per second: ties at every timestamp
        run = RunRecord(
            id=f"r{i:05d}",
            graph="counter" if i % 2 else "review",
            fingerprint="f" * 64,
            graph_doc='{"nodes": {}}',
            status="completed" if i % 3 else "failed",
            input="{}",
            created_at=at,
            updated_at=at + 1.5,
        )
        store.create_run(run, StepRecord(run_id=run.id, step=0, tasks="[]", created_at=at))
    app = create_app(registry(), db=str(tmp_path / "runs.db"))
    with TestClient(app) as c:
        seen: list[str] = []
        cursor = None
        while True:
            q = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = c.get("/v1/tasks", params=q).json()
            seen += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 1_200
        first = c.get("/v1/tasks", params={"limit": 1}).json()["items"][0]
        assert first["duration_ms"] == 1500.0 and first["activations"] == 0
        assert first["tokens"] == 0 and first["cost_usd"] is None
        since, until = t0 + 100, t0 + 110  # ten seconds: runs 300..329
        ids: list[str] = []
        cursor = None
        while True:
            q = {
                "limit": 7,
                "since": since,
                "until": until,
                **({"cursor": cursor} if cursor else {}),
            }
            page = c.get("/v1/tasks", params=q).json()
            ids += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(ids) == [f"r{i:05d}" for i in range(300, 330)]
        page = c.get(
            "/v1/tasks", params={"status": "failed", "graph": "review", "until": t0 + 2}
        ).json()
        assert [t["id"] for t in page["items"]] == ["r00000"]


def test_json_diff_reports_paths_and_appends() -> None:
    before = {"a": 1, "l": [1, 2], "d": {"x": 1, "gone": True}}
    after = {"a": 2, "l": [1, 2, 3], "d": {"x": 1, "new": "y"}, "b": None}
    got = [(d.path, d.op, d.before, d.after) for d in json_diff(before, after)]
    assert got == [
        ("a", "change", 1, 2),
        ("l/2", "add", None, 3),
        ("d/gone", "remove", True, None),
        ("d/new", "add", None, "y"),
        ("b", "add", None, None),
    ]
    assert json_diff(before, before) == []
    assert len(json_diff({"l": []}, {"l": list(range(2000))})) == 501


def test_graph_svg_draws_loops_joins_and_escapes_names() -> None:
    doc = {
        "name": "g",
        "nodes": {"a": {"kind": "node"}, "b<i>": {"kind": "subgraph"}, "c": {"kind": "node"}},
        "edges": [["__start__", "a"], ["__start__", "b<i>"], ["c", "__end__"]],
        "joins": [[["a", "b<i>"], "c"]],
        "routers": {"c": ["a", "__end__"]},
    }
    svg = graph_svg(doc, {"a": ("ran", 3), "c": ("failed", 1)})
    assert svg.startswith("<svg") and "<i>" not in svg and "b&lt;i&gt;" in svg
    assert 'data-node="a" data-status="ran" data-visits="3"' in svg
    assert 'data-node="c" data-status="failed"' in svg
    assert 'data-node="b&lt;i&gt;" data-status="never_reached"' in svg
    assert svg.count('class="fs-edge"') == 6  # 2 + 1 edges, 2 join sources, c -> a loop


@pytest.mark.slow
def test_paging_100000_runs_reads_one_page_at_a_time(tmp_path: Path) -> None:
    """A page costs the same over 100,000 runs as over a thousand: keyset paging on the
    created_at index, never a scan of every run."""
    store = SQLiteStore(str(tmp_path / "runs.db"))
    t0 = 1_700_000_000.0
    doc = '{"nodes": {}}'
    for i in range(100_000):
        at = t0 + i * 0.5
        run = RunRecord(
            id=f"r{i:06d}",
            graph="counter",
            fingerprint="f" * 64,
            graph_doc=doc,
            status="completed",
            input="{}",
            created_at=at,
            updated_at=at,
        )
        store.create_run(run, StepRecord(run_id=run.id, step=0, tasks="[]", created_at=at))
    with TestClient(create_app(registry(), db=str(tmp_path / "runs.db"))) as c:
        c.get("/v1/tasks", params={"limit": 50})  # warm
        t = time.perf_counter()
        page = c.get("/v1/tasks", params={"limit": 50}).json()
        first = time.perf_counter() - t
        cursor, pages = page["next_cursor"], 1
        while pages < 40:  # 2,000 runs in
            page = c.get("/v1/tasks", params={"limit": 50, "cursor": cursor}).json()
            cursor, pages = page["next_cursor"], pages + 1
        t = time.perf_counter()
        deep = c.get("/v1/tasks", params={"limit": 50, "cursor": cursor}).json()
        later = time.perf_counter() - t
        t = time.perf_counter()
        old = c.get("/v1/tasks", params={"limit": 50, "until": t0 + 1000}).json()
        by_time = time.perf_counter() - t
    assert page["items"][-1]["id"] == "r098000"
    assert deep["items"][0]["id"] == "r097999"
    assert [t["id"] for t in old["items"]][:2] == ["r001999", "r001998"]
    assert max(first, later, by_time) < 0.25, (first, later, by_time)


def test_read_only_inspector_shows_a_small_state_exactly_from_its_snapshot(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    done, _ = _run_in_thread_db(db)
    app = create_app(GraphRegistry(), db=str(db), read_only=True)
    with TestClient(app) as c:
        s = c.get(f"/v1/tasks/{done}/state?step=2").json()
    # a state this small is snapshotted at every step: exact without reducers
    assert s["exact"] is True and s["snapshot_step"] == 2 and s["pending_updates"] == []
    assert s["state"]["rounds"] == 1 and [d["path"] for d in s["diff"]] == ["draft", "rounds"]


def test_the_inspector_reads_a_postgres_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowstate.checkpoints._postgres import PostgresStore
    from flowstate.service._inspect import RunInspector
    from tests.store.conftest import drop_pg_schema, pg_schema, require_postgres

    monkeypatch.setattr("flowstate.engine._step.SNAPSHOT_SMALL_BYTES", 0)  # see above
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "inspector")
    store = PostgresStore(dsn, schema=schema)
    try:
        reg = registry().bind(store)
        rid = asyncio.run(reg["review"].run({"topic": "eels"})).run_id
        o = RunInspector(store, reg).overview(rid)
        assert o.status == "paused" and o.activations == 3 and o.tokens["input_tokens"] == 120
        assert [i.id for i in o.interrupts] == ["3:approve:0"]
        assert {n.name: n.status for n in o.nodes}["approve"] == "interrupted"
        page = RunInspector(store, reg).timeline(rid, 0, 100)
        assert [a.node for a in page.items] == ["research", "write", "polish"]
        st = RunInspector(store, reg).state(rid, 2)
        assert st.exact and st.state["draft"] == "A 7-word draft on eels"
        ro = RunInspector(store, GraphRegistry()).state(rid, 2)  # read-only: no reducers
        assert not ro.exact and [u["node"] for u in ro.pending_updates] == ["research", "write"]
    finally:
        store.close()
        drop_pg_schema(schema)
