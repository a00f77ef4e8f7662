"""Resume with `update` and `goto` over HTTP (issue 19): stored before the task is queued."""

from __future__ import annotations

from .conftest import wait_for
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
