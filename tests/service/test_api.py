"""The task API over a real uvicorn server: create, get, list, resume, errors."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from flowstate.checkpoints import SQLiteStore
from flowstate.service import GraphRegistry, create_app, load_registry
from flowstate.service._service import admission_rows, page_runs

from .conftest import wait_for
from .graphs import BROKEN, STEP_NODES, approval_graph, steps_graph


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"]
    assert "Traceback" not in r.text
    return body  # type: ignore[no-any-return]


def test_create_run_and_inspect(serve) -> None:
    s = serve()
    c = s.client()
    r = c.post("/v1/tasks", json={"graph": "steps", "input": {"label": "a"}})
    assert r.status_code == 202
    assert r.json()["status"] == "queued"
    tid = r.json()["id"]
    body = wait_for(c, tid)
    assert body["graph"] == "steps"
    assert body["state"] == {"label": "a", "delay": 0.0, "log": STEP_NODES}
    assert [st["node"] for st in body["steps"]] == STEP_NODES
    assert [st["step"] for st in body["steps"]] == [0, 1, 2, 3, 4]
    assert body["steps"][0]["update"] == {"log": ["s0"]}
    assert body["interrupts"] == [] and body["error"] is None and body["head_step"] == 5
    # the store agrees: the task is a run
    assert s.service.store.get_run(tid).status == "completed"


def test_input_is_validated_against_the_graph_state(serve) -> None:
    c = serve().client()
    body = _problem(c.post("/v1/tasks", json={"graph": "steps", "input": {"label": 5}}), 422)
    assert body["errors"][0]["loc"] == ["body", "input", "label"]
    assert "body.input.label" in body["detail"]
    # strict: the schema says integer, so "3" is refused rather than coerced
    r = c.post("/v1/tasks", json={"graph": "slow", "input": {"ticks": "3"}})
    assert _problem(r, 422)["errors"][0]["loc"] == ["body", "input", "ticks"]
    r = c.post("/v1/tasks", json={"graph": "steps", "input": {"delay": 99}})
    assert _problem(r, 422)["errors"][0]["loc"] == ["body", "input", "delay"]
    # unknown fields at the top level are refused (extra="forbid")
    r = c.post("/v1/tasks", json={"graph": "steps", "input": {}, "code": "print(1)"})
    assert _problem(r, 422)["errors"][0]["loc"] == ["body", "code"]
    r = c.post("/v1/tasks", json={"graph": "steps", "input": {}, "max_steps": 0})
    assert _problem(r, 422)["errors"][0]["loc"] == ["body", "max_steps"]
    r = c.post("/v1/tasks", content=b"{not json", headers={"content-type": "application/json"})
    _problem(r, 422)
    r = c.post("/v1/tasks", content=b"[" * 5000, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and "Traceback" not in r.text


@pytest.mark.parametrize(
    "graph", ["os:system", "../x", "tests.service.graphs:REGISTRY", "x" * 10_000, "", None, 7]
)
def test_only_registered_graphs_run(serve, graph: object) -> None:
    c = serve().client()
    body = _problem(c.post("/v1/tasks", json={"graph": graph, "input": {}}), 422)
    assert body["errors"][0]["loc"] == ["body", "graph"]
    assert len(body["detail"]) < 1000
    assert c.get("/v1/tasks").json()["items"] == []


def test_graphs_health_ready_and_openapi(serve) -> None:
    c = serve().client()
    graphs = {g["name"]: g for g in c.get("/v1/graphs").json()}
    assert set(graphs) == {"steps", "approval", "slow", "slow_sync", "flaky", "echo"}
    assert graphs["steps"]["nodes"] == sorted(STEP_NODES)
    assert "label" in graphs["steps"]["input_schema"]["properties"]
    assert c.get("/health").json() == {"status": "ok"}
    assert c.get("/ready").json() == {"status": "ok"}
    spec = c.get("/openapi.json").json()
    ops = {(m, p) for p, item in spec["paths"].items() for m in item}
    assert {
        ("post", "/v1/tasks"),
        ("get", "/v1/tasks"),
        ("get", "/v1/tasks/{task_id}"),
        ("post", "/v1/tasks/{task_id}/cancel"),
        ("post", "/v1/tasks/{task_id}/resume"),
        ("get", "/v1/tasks/{task_id}/events"),
    } <= ops
    create = spec["paths"]["/v1/tasks"]["post"]
    assert "application/problem+json" in create["responses"]["422"]["content"]
    assert "413" in create["responses"] and "links" in create["responses"]["202"]
    body = spec["components"]["schemas"]["CreateTask"]
    assert body["discriminator"]["propertyName"] == "graph"
    assert spec["components"]["schemas"]["CreateTask_steps"]["additionalProperties"] is False


def test_errors_are_problem_documents(serve) -> None:
    c = serve().client()
    body = _problem(c.get("/v1/tasks/0123456789abcdef"), 404)
    assert body["code"] == "FS206"
    _problem(c.get("/v1/tasks/..%2F..%2Fetc"), 404)
    _problem(c.get("/v1/tasks/bad id!"), 422)
    _problem(c.get("/nowhere"), 404)
    r = c.put("/v1/tasks")
    _problem(r, 405)
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}
    r = c.delete("/v1/tasks/0123456789abcdef")
    assert _problem(r, 405) and "GET" in r.headers["allow"]
    _problem(c.get("/v1/tasks", params={"limit": 0}), 422)
    _problem(c.get("/v1/tasks", params={"status": "exploded"}), 422)
    _problem(c.get("/v1/tasks", params={"cursor": "' OR 1=1 --"}), 422)


def test_corrupt_row_is_a_500_without_internals(serve, tmp_path: Path) -> None:
    s = serve()
    c = s.client()
    tid = c.post("/v1/tasks", json={"graph": "steps", "input": {}}).json()["id"]
    wait_for(c, tid)
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.execute("UPDATE runs SET input = ? WHERE id = ?", ['{"label": "forged"}', tid])
    body = _problem(c.get(f"/v1/tasks/{tid}"), 500)
    assert body["code"] == "FS301"
    assert str(tmp_path) not in json.dumps(body)
    assert c.get("/ready").status_code == 200


def test_interrupt_then_resume_with_a_value(serve) -> None:
    c = serve().client()
    tid = c.post("/v1/tasks", json={"graph": "approval", "input": {"amount": 120}}).json()["id"]
    body = wait_for(c, tid, ("paused",))
    assert body["reason"] == "interrupt in 'ask'"
    assert body["interrupts"] == [
        {
            "id": "0:ask:0",
            "node": "ask",
            "step": 0,
            "task_path": "ask",
            "seq": 0,
            "payload": {"question": "approve?", "amount": 120},
            "deadline": None,
        }
    ]
    # a body with unknown fields is refused
    _problem(c.post(f"/v1/tasks/{tid}/resume", json={"value": 1, "bogus": 2}), 422)
    r = c.post(f"/v1/tasks/{tid}/resume", json={"value": "approved"})
    assert r.status_code == 202 and r.json() == {"id": tid, "status": "queued"}
    body = wait_for(c, tid)
    assert body["state"] == {"amount": 120, "decision": "approved", "done": True}
    assert body["interrupts"] == []
    # a completed task can be neither resumed nor cancelled
    assert _problem(c.post(f"/v1/tasks/{tid}/resume", json={}), 409)
    assert _problem(c.post(f"/v1/tasks/{tid}/cancel"), 409)


def test_resume_with_null_answers_the_interrupt(serve) -> None:
    c = serve().client()
    tid = c.post("/v1/tasks", json={"graph": "approval", "input": {}}).json()["id"]
    wait_for(c, tid, ("paused",))
    # no value: the node asks again
    assert c.post(f"/v1/tasks/{tid}/resume").status_code == 202
    assert wait_for(c, tid, ("paused",))["interrupts"][0]["seq"] == 0
    resp = c.post(f"/v1/tasks/{tid}/resume", json={"value": None})
    assert resp.status_code == 202, resp.text
    assert wait_for(c, tid)["state"]["decision"] == "None"


def test_failed_task_reports_error_and_resumes_after_a_fix(serve) -> None:
    c = serve().client()
    BROKEN["flaky"] = True
    try:
        tid = c.post("/v1/tasks", json={"graph": "flaky", "input": {"n": 1}}).json()["id"]
        body = wait_for(c, tid, ("failed",))
        assert "fragile is broken today" in body["error"] and body["reason"] is None
        r = c.post(f"/v1/tasks/{tid}/resume", json={"value": 1})
        assert "no pending interrupt" in _problem(r, 409)["detail"]
        BROKEN["flaky"] = False
        assert c.post(f"/v1/tasks/{tid}/resume", json={}).status_code == 202
        assert wait_for(c, tid)["state"] == {"n": 2}
    finally:
        BROKEN["flaky"] = True


def test_idempotency_key_names_one_task(serve) -> None:
    s = serve()
    c = s.client()
    req = {"graph": "steps", "input": {"label": "once"}, "idempotency_key": "order-42"}
    first = c.post("/v1/tasks", json=req)
    assert first.status_code == 202
    again = c.post("/v1/tasks", json=req)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = {**req, "input": {"label": "twice"}}
    assert "order-42" not in _problem(c.post("/v1/tasks", json=other), 409)["detail"]

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=s.url, timeout=10) as ac:
            body = {**req, "idempotency_key": "race"}
            return await asyncio.gather(*[ac.post("/v1/tasks", json=body) for _ in range(10)])

    rs = asyncio.run(race())
    assert len({r.json()["id"] for r in rs}) == 1
    assert sorted(r.status_code for r in rs) == [200] * 9 + [202]
    wait_for(c, rs[0].json()["id"])
    assert len(c.get("/v1/tasks").json()["items"]) == 2


def test_pagination_is_stable(serve) -> None:
    s = serve()
    c = s.client()
    ids = [
        c.post("/v1/tasks", json={"graph": "steps", "input": {"label": str(i)}}).json()["id"]
        for i in range(7)
    ]
    for tid in ids:
        wait_for(c, tid)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = c.get("/v1/tasks", params=params).json()
        seen += [t["id"] for t in page["items"]]
        pages += 1
        if pages == 1:  # a task created meanwhile does not shift the later pages
            late = c.post("/v1/tasks", json={"graph": "approval", "input": {}}).json()["id"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(ids))
    assert late not in seen
    only = c.get("/v1/tasks", params={"graph": "approval"}).json()["items"]
    assert [t["id"] for t in only] == [late]
    done = c.get("/v1/tasks", params={"status": "completed", "limit": 500}).json()["items"]
    assert {t["id"] for t in done} == set(ids)


def test_keyset_pages_survive_identical_timestamps(tmp_path: Path) -> None:
    g = steps_graph().compile(store=str(tmp_path / "t.db"))
    for i in range(9):
        run, step0 = asyncio.run(admission_rows(g, g.state_model(), f"run{i}", None))
        g.store.create_run(run.model_copy(update={"created_at": 1000.0}), step0)
    got, after = [], None
    while True:
        rows, more = page_runs(g.store, status=None, graph=None, limit=2, after=after)
        got += [r.id for r in rows]
        if not more:
            break
        after = (rows[-1].created_at, rows[-1].id)
    assert got == [f"run{i}" for i in range(9)]


def test_admission_rows_match_what_the_engine_writes(tmp_path: Path) -> None:
    """The service admits a queued task with the rows ``run()`` writes (it has the engine
    make them): the same config, input and first step, and the engine runs it."""
    g = steps_graph().compile(store=str(tmp_path / "a.db"), interrupt_before=["s2"])
    asyncio.run(g.run({"label": "x"}, run_id="engine", max_steps=7))
    engine_run, engine_step = g.store.get_run("engine"), g.store.get_step("engine", 0)
    run, step0 = asyncio.run(admission_rows(g, g.state_model(label="x"), "svc", 7))
    assert run.status == "queued"
    assert json.loads(run.config) == json.loads(engine_run.config)
    for f in ("graph", "fingerprint", "graph_doc", "input", "parent_id"):
        assert getattr(run, f) == getattr(engine_run, f), f
    assert engine_step is not None
    for f in ("tasks", "joins", "snapshot"):
        assert getattr(step0, f) == getattr(engine_step, f), f
    # and the engine runs an admitted task to the same end
    g.store.create_run(run, step0)
    result = asyncio.run(g.resume("svc"))
    assert result.status == "paused"  # the breakpoint before s2 came through the config
    assert asyncio.run(g.resume("svc")).state.log == STEP_NODES


def test_registry_is_an_allow_list_by_graph_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="register it as 'steps'"):
        GraphRegistry({"other": steps_graph().compile()})
    with pytest.raises(ValueError, match="at least one graph"):
        create_app({}, db=str(tmp_path / "x.db"))
    reg = load_registry("tests.service.graphs:REGISTRY")
    assert "approval" in reg and isinstance(reg, GraphRegistry)
    assert list(load_registry("tests.service.graphs:registry")) == list(reg)
    with pytest.raises(ValueError, match="module:attr"):
        load_registry("tests.service.graphs")
    with pytest.raises(ValueError, match="has no attribute"):
        load_registry("tests.service.graphs:NOPE")
    assert list(GraphRegistry([approval_graph()])) == ["approval"]


def test_task_state_is_readable_while_running(serve) -> None:
    c = serve().client()
    tid = c.post("/v1/tasks", json={"graph": "steps", "input": {"delay": 0.1}}).json()["id"]
    deadline = time.monotonic() + 10
    while True:
        body = c.get(f"/v1/tasks/{tid}").json()
        if body["status"] == "running" and body["steps"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert body["state"]["log"] == [st["node"] for st in body["steps"]]
    wait_for(c, tid)


def test_store_is_shared_with_the_engine(serve, tmp_path: Path) -> None:
    c = serve().client()
    tid = c.post("/v1/tasks", json={"graph": "steps", "input": {}}).json()["id"]
    wait_for(c, tid)
    store = SQLiteStore(tmp_path / "runs.db")
    assert [w.node for w in store.writes(tid)] == STEP_NODES
    assert store.integrity_check() == "ok"


def test_example_registry_serves_a_ticket(serve) -> None:
    c = serve(graphs=load_registry("examples.service_graphs:REGISTRY")).client()
    r = c.post("/v1/tasks", json={"graph": "support", "input": {"text": "refund my invoice"}})
    tid = r.json()["id"]
    body = wait_for(c, tid, ("paused",))
    assert body["interrupts"][0]["payload"]["question"] == "send this reply?"
    c.post(f"/v1/tasks/{tid}/resume", json={"value": True})
    body = wait_for(c, tid)
    assert body["state"]["category"] == "billing"
    assert body["state"]["log"] == ["classified as billing", "drafted", "approved", "sent"]


def test_public_surface_is_pinned() -> None:
    import flowstate.service

    assert flowstate.service.__all__ == [
        "GraphRegistry",
        "ServerLimits",
        "create_app",
        "load_registry",
        "serve_command",
        "server_config",
        "ui_command",
    ]
