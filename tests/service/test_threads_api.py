"""Threads over HTTP: create a thread, post messages (turns) with each strategy, stream a
turn's events, read the thread's turns and the list of threads."""

from __future__ import annotations

from .conftest import wait_for
from .graphs import STEP_NODES
from .test_events import read_sse


def test_a_thread_over_http(serve) -> None:  # type: ignore[no-untyped-def]
    s = serve()
    c = s.client()
    r = c.post(
        "/v1/threads",
        json={"graph": "steps", "input": {"label": "a", "delay": 0.2}, "thread_id": "chat-1"},
    )
    assert r.status_code == 202, r.text
    first = r.json()
    assert (first["thread_id"], first["turn"], first["status"]) == ("chat-1", 1, "queued")
    r = c.post("/v1/threads", json={"graph": "steps", "input": {}, "thread_id": "chat-1"})
    assert r.status_code == 409 and "/v1/threads/chat-1/turns" in r.json()["detail"]
    wait_for(c, first["id"], ("running",))
    # reject (the default) while turn 1 runs: 409 naming it
    r = c.post("/v1/threads/chat-1/turns", json={"graph": "steps", "input": {"label": "b"}})
    assert r.status_code == 409 and first["id"] in r.json()["detail"]
    assert r.json()["code"] == "FS225"
    # enqueue: stored at once as turn 2, started when turn 1 has finished
    r = c.post(
        "/v1/threads/chat-1/turns",
        json={
            "graph": "steps",
            "input": {"label": "b", "delay": 0.0},
            "multitask_strategy": "enqueue",
        },
    )
    assert r.status_code == 202, r.text
    second = r.json()
    assert (second["turn"], second["status"]) == (2, "queued")
    events = read_sse(c, second["id"])  # the turn's events, as any task's
    assert events[-1]["event"] == "run_finished" and events[-1]["json"]["status"] == "completed"
    assert c.get(f"/v1/tasks/{first['id']}").json()["status"] == "completed"
    body = wait_for(c, second["id"])
    assert body["state"]["log"] == STEP_NODES * 2  # the second turn went on from the first
    assert body["state"]["label"] == "b"
    # interrupt: turn 3 runs; turn 4 cancels it and starts from its last commit
    third = c.post(
        "/v1/threads/chat-1/turns", json={"graph": "steps", "input": {"delay": 0.3}}
    ).json()
    wait_for(c, third["id"], ("running",))
    r = c.post(
        "/v1/threads/chat-1/turns",
        json={"graph": "steps", "input": {"delay": 0.0}, "multitask_strategy": "interrupt"},
    )
    assert r.status_code == 202, r.text
    fourth = wait_for(c, r.json()["id"])
    assert c.get(f"/v1/tasks/{third['id']}").json()["status"] == "cancelled"
    assert fourth["state"]["log"][-5:] == STEP_NODES
    assert len(fourth["state"]["log"]) < 4 * len(STEP_NODES)  # turn 3 was cut short
    thread = c.get("/v1/threads/chat-1").json()
    assert thread["graph"] == "steps" and thread["forked_from"] is None
    assert [(t["turn"], t["status"]) for t in thread["turns"]] == [
        (1, "completed"),
        (2, "completed"),
        (3, "cancelled"),
        (4, "completed"),
    ]
    assert thread["turns"][1]["input"] == {"label": "b", "delay": 0.0}
    listed = c.get("/v1/threads").json()
    assert [(t["thread_id"], t["turns"], t["last_status"]) for t in listed] == [
        ("chat-1", 4, "completed")
    ]
    assert c.get("/v1/threads/nope").status_code == 404
    r = c.post("/v1/threads/nope/turns", json={"graph": "steps", "input": {}})
    assert r.status_code == 404 and r.json()["code"] == "FS228"
    r = c.post("/v1/threads/chat-1/turns", json={"graph": "steps", "input": {"labl": "x"}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "input", "labl"]
    r = c.post("/v1/threads/chat-1/turns", json={"graph": "echo", "input": {}})
    assert r.status_code == 409 and "runs graph 'steps'" in r.json()["detail"]
    r = c.post("/v1/threads/chat-1/turns", json={"graph": "steps", "input": {"delay": "1"}})
    assert r.status_code == 422  # strict: the schema says number
