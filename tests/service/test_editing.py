"""Resume with `update` and `goto` over HTTP (issue 19): stored before the task is queued."""

from __future__ import annotations

import json

from .conftest import wait_for
from .graphs import STEP_NODES
from .test_api import _problem


def test_resume_with_update_and_goto(serve) -> None:
    s = serve()
    c = s.client()
    tid = c.post("/v1/tasks", json={"graph": "approval", "input": {"amount": 120}}).json()["id"]
    wait_for(c, tid, ("paused",))
    # a field the state lacks: 422 with the engine's code, nothing stored
    body = _problem(c.post(f"/v1/tasks/{tid}/resume", json={"update": {"bogus": 1}}), 422)
    assert body["code"] == "FS202" and "bogus" in body["detail"]
    # goto would drop the activation the answer is for
    body = _problem(
        c.post(f"/v1/tasks/{tid}/resume", json={"value": "yes", "goto": ["apply"]}), 409
    )
    assert body["code"] == "FS222"
    r = c.post(f"/v1/tasks/{tid}/resume", json={"update": {"amount": 5}, "goto": ["apply"]})
    assert r.status_code == 202, r.text
    body = wait_for(c, tid)
    assert body["state"] == {"amount": 5, "decision": None, "done": True}
    graph = s.service.graphs["approval"]
    edits = [h for h in graph.history(tid) if h.edit]
    assert [h.update for h in edits] == [{"amount": 5}]


def _sse(c, tid: str, query: str) -> list[dict]:
    out: list[dict] = []
    with c.stream("GET", f"/v1/tasks/{tid}/events{query}") as r:
        assert r.status_code == 200, r.read()
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                out.append({"kind": kind, **json.loads(line[6:])})
    return out


def test_event_stream_mode_selects_kinds_and_values_carry_the_state(serve) -> None:
    c = serve().client()
    tid = c.post("/v1/tasks", json={"graph": "steps", "input": {"delay": 0.02}}).json()["id"]
    values = _sse(c, tid, "?mode=values")
    kinds = [e["kind"] for e in values]
    assert kinds == ["run_started"] + ["step_finished"] * len(STEP_NODES) + ["run_finished"]
    logs = [e["state"]["log"] for e in values if e["kind"] == "step_finished"]
    assert logs == [STEP_NODES[: i + 1] for i in range(len(STEP_NODES))]
    both = _sse(c, tid, "?mode=values&mode=updates")
    assert {e["kind"] for e in both} == {
        "run_started",
        "node_finished",
        "step_finished",
        "run_finished",
    }
    # without a mode: every event, and step_finished carries no state (nothing computed)
    plain = _sse(c, tid, "")
    assert all(e["state"] is None for e in plain if e["kind"] == "step_finished")
    assert "node_started" in {e["kind"] for e in plain}
    r = c.get(f"/v1/tasks/{tid}/events?mode=everything")
    assert r.status_code == 422


def test_update_state_over_http(serve) -> None:
    s = serve()
    c = s.client()
    tid = c.post("/v1/tasks", json={"graph": "approval", "input": {"amount": 7}}).json()["id"]
    wait_for(c, tid, ("paused",))
    r = c.post(f"/v1/tasks/{tid}/edit", json={"values": {"amount": 9}, "by": "ops"})
    assert r.status_code == 200 and r.json() == {"id": tid, "status": "paused"}
    assert c.get(f"/v1/tasks/{tid}").json()["state"]["amount"] == 9
    body = _problem(c.post(f"/v1/tasks/{tid}/edit", json={"values": {"nope": 1}}), 422)
    assert body["code"] == "FS202"
    body = _problem(c.post(f"/v1/tasks/{tid}/edit", json={"values": {}, "as_node": "zz"}), 409)
    assert body["code"] == "FS222"
    # as_node: the edit counts as `ask`'s write, so the task continues at `apply`
    r = c.post(f"/v1/tasks/{tid}/edit", json={"values": {"decision": "ok"}, "as_node": "ask"})
    assert r.status_code == 200, r.text
    assert c.post(f"/v1/tasks/{tid}/resume", json={}).status_code == 202
    assert wait_for(c, tid)["state"] == {"amount": 9, "decision": "ok", "done": True}
    graph = s.service.graphs["approval"]
    assert [(h.node, h.by) for h in graph.history(tid) if h.edit] == [
        ("__edit__", "ops"),
        ("ask", None),
    ]
