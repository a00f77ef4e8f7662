"""Issue 15 item 2 over HTTP: interrupts listed with ids, answered by id."""

from __future__ import annotations

import time

from tests.seams.graphs import fan_out_asks


def _wait(c, tid, statuses=("completed",)):
    deadline = time.monotonic() + 20
    while True:
        body = c.get(f"/v1/tasks/{tid}").json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_service_lists_ids_and_takes_answers_keyed_by_id(serve) -> None:
    c = serve(graphs={"fan_out_asks": fan_out_asks()}).client()
    tid = c.post("/v1/tasks", json={"graph": "fan_out_asks", "input": {"n": 3}}).json()["id"]
    body = _wait(c, tid, ("paused",))
    assert [(i["id"], i["node"], i["payload"]) for i in body["interrupts"]] == [
        (f"1:ask[{k}]:0", "ask", {"item": k}) for k in range(3)
    ]
    r = c.post(f"/v1/tasks/{tid}/resume", json={"value": "x"})
    assert r.status_code == 409 and "answers" in r.json()["detail"]
    r = c.post(f"/v1/tasks/{tid}/resume", json={"answers": {"1:ask[9]:0": 1}})
    assert r.status_code == 409 and "1:ask[0]:0" in r.json()["detail"]
    r = c.post(f"/v1/tasks/{tid}/resume", json={"answers": {"1:ask[1]:0": "b"}})
    assert r.status_code == 202, r.text
    body = _wait(c, tid, ("paused",))
    assert [i["id"] for i in body["interrupts"]] == ["1:ask[0]:0", "1:ask[2]:0"]
    r = c.post(f"/v1/tasks/{tid}/resume", json={"answers": {"1:ask[0]:0": "a", "1:ask[2]:0": "c"}})
    assert r.status_code == 202, r.text
    body = _wait(c, tid)
    assert sorted(body["state"]["answers"]) == ["0=a", "1=b", "2=c"]


def test_service_reports_usage_with_descendants(serve) -> None:
    from tests.seams.test_subgraph_seams import _parent, _thinker

    c = serve(graphs={"parent": _parent(_thinker(turns=3))}).client()
    tid = c.post("/v1/tasks", json={"graph": "parent", "input": {}}).json()["id"]
    body = _wait(c, tid)
    assert body["usage"] == {"input_tokens": 150, "output_tokens": 150}
