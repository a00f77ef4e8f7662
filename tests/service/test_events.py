"""GET /v1/tasks/{id}/events: the engine's typed events as server-sent events, in order."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from flowstate.events import EventAdapter

from .conftest import wait_for
from .graphs import STEP_NODES


def read_sse(client: httpx.Client, task_id: str, **headers: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", f"/v1/tasks/{task_id}/events", headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line == "":
                if current:
                    events.append(current)
                    current = {}
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(": ")
                current[field] = value
    if current:
        events.append(current)
    for e in events:
        e["json"] = json.loads(e["data"])
        EventAdapter.validate_python(e["json"])  # each is a typed engine event
        assert e["event"] == e["json"]["kind"]
    return events


def test_every_event_in_order_ending_with_run_finished(serve) -> None:
    s = serve()
    c = s.client()
    tid = c.post("/v1/tasks", json={"graph": "steps", "input": {"delay": 0.05}}).json()["id"]
    live = read_sse(c, tid)  # subscribed while it runs
    kinds = [e["event"] for e in live]
    assert kinds[0] == "run_started" and live[0]["json"]["resumed"] is False
    assert kinds[-1] == "run_finished" and live[-1]["json"]["status"] == "completed"
    assert kinds.count("run_finished") == 1
    assert kinds[1:-1] == ["node_started", "node_finished", "step_finished"] * len(STEP_NODES)
    finished = [e["json"] for e in live if e["event"] == "node_finished"]
    assert [e["node"] for e in finished] == STEP_NODES
    assert [e["step"] for e in finished] == list(range(len(STEP_NODES)))
    ids = [e["id"] for e in live]
    assert [int(i.split(":")[1]) for i in ids] == list(range(len(live)))
    at = [e["json"]["at"] for e in live]
    assert at == sorted(at)
    # the events agree with the committed history
    steps = c.get(f"/v1/tasks/{tid}").json()["steps"]
    assert [e["update"] for e in finished] == [st["update"] for st in steps]
    # a late subscriber gets the same stream; Last-Event-ID resumes after an event
    assert [e["data"] for e in read_sse(c, tid)] == [e["data"] for e in live]
    rest = read_sse(c, tid, **{"Last-Event-ID": ids[5]})
    assert [e["data"] for e in rest] == [e["data"] for e in live[6:]]


def test_many_subscribers_see_the_same_stream(serve) -> None:
    s = serve()
    c = s.client()
    tid = c.post("/v1/tasks", json={"graph": "steps", "input": {"delay": 0.05}}).json()["id"]
    got: list[list[str]] = []

    def sub() -> None:
        with s.client() as cc:
            got.append([e["data"] for e in read_sse(cc, tid)])

    threads = [threading.Thread(target=sub) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(got) == 5 and all(g == got[0] for g in got)
    assert len(got[0]) == 2 + 3 * len(STEP_NODES)


def test_paused_and_resumed_task_streams(serve) -> None:
    c = serve().client()
    tid = c.post("/v1/tasks", json={"graph": "approval", "input": {}}).json()["id"]
    wait_for(c, tid, ("paused",))
    paused = read_sse(c, tid)
    assert paused[-1]["json"]["status"] == "paused"
    assert paused[-1]["json"]["reason"] == "interrupt in 'ask'"
    c.post(f"/v1/tasks/{tid}/resume", json={"value": "ok"})
    resumed = read_sse(c, tid)  # the resumed execution
    assert resumed[0]["event"] == "run_started" and resumed[0]["json"]["resumed"] is True
    assert resumed[-1]["json"]["status"] == "completed"
    assert [e["json"]["node"] for e in resumed if e["event"] == "node_finished"] == [
        "ask",
        "apply",
    ]


def test_events_of_an_unknown_task_is_404(serve) -> None:
    c = serve().client()
    r = c.get("/v1/tasks/0000000000000000/events")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
