"""Cancel really stops work (RELIABILITY.md R11), and the task timeout."""

from __future__ import annotations

import time

from .conftest import wait_for
from .graphs import calls


def _wait(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_cancel_during_a_long_async_node(serve, calls_db: str) -> None:
    s = serve()
    store = s.service.store
    c = s.client()
    tid = c.post("/v1/tasks", json={"graph": "slow", "input": {"ticks": 400}}).json()["id"]
    _wait(lambda: len(store.effects(tid)) >= 3)
    t0 = time.monotonic()
    r = c.post(f"/v1/tasks/{tid}/cancel")
    ack = time.time()
    assert r.status_code == 200 and r.json() == {"id": tid, "status": "cancelled"}
    assert time.monotonic() - t0 < 2.0
    n_effects = len(store.effects(tid))
    time.sleep(0.4)  # ~8 ticks would have run
    effects = store.effects(tid)
    assert len(effects) == n_effects and all(e.created_at <= ack for e in effects)
    assert store.writes(tid) == []
    assert [n for r_, n, _ in calls(calls_db) if r_ == tid] == ["long"]
    body = c.get(f"/v1/tasks/{tid}").json()
    assert body["status"] == "cancelled" and body["reason"] == "cancelled"
    # cancelling again is harmless; a cancelled task resumes only when asked
    assert c.post(f"/v1/tasks/{tid}/cancel").json()["status"] == "cancelled"
    assert c.post(f"/v1/tasks/{tid}/resume").status_code == 202
    _wait(lambda: len(store.effects(tid)) > n_effects)  # picks up from the journal
    assert c.post(f"/v1/tasks/{tid}/cancel").json()["status"] == "cancelled"


def test_cancel_during_a_sync_node(serve, calls_db: str) -> None:
    s = serve()
    c = s.client()
    tid = c.post("/v1/tasks", json={"graph": "slow_sync", "input": {"ticks": 16}}).json()["id"]
    wait_for(c, tid, ("running",))
    time.sleep(0.1)
    t0 = time.monotonic()
    r = c.post(f"/v1/tasks/{tid}/cancel")
    assert r.json()["status"] == "cancelled" and time.monotonic() - t0 < 2.0
    time.sleep(1.0)  # the thread finishes its sleep; nothing of it is committed
    assert s.service.store.writes(tid) == []
    assert not [n for r_, n, _ in calls(calls_db) if r_ == tid]  # 'after' never started


def test_cancel_queued_task_never_starts_and_frees_nothing(serve, calls_db: str) -> None:
    s = serve(max_concurrent_runs=1)
    c = s.client()
    hog = c.post("/v1/tasks", json={"graph": "slow", "input": {"ticks": 400}}).json()["id"]
    wait_for(c, hog, ("running",))
    waiting = c.post("/v1/tasks", json={"graph": "steps", "input": {}}).json()["id"]
    time.sleep(0.1)
    assert c.get(f"/v1/tasks/{waiting}").json()["status"] == "queued"
    assert c.post(f"/v1/tasks/{waiting}/cancel").json()["status"] == "cancelled"
    assert c.post(f"/v1/tasks/{hog}/cancel").json()["status"] == "cancelled"
    nxt = c.post("/v1/tasks", json={"graph": "steps", "input": {}}).json()["id"]
    wait_for(c, nxt)  # the slot was freed
    assert not [n for r_, n, _ in calls(calls_db) if r_ == waiting]
    assert s.service.store.writes(waiting) == []
    assert c.get(f"/v1/tasks/{waiting}").json()["status"] == "cancelled"


def test_cancel_paused_task(serve) -> None:
    c = serve().client()
    tid = c.post("/v1/tasks", json={"graph": "approval", "input": {}}).json()["id"]
    wait_for(c, tid, ("paused",))
    assert c.post(f"/v1/tasks/{tid}/cancel").json()["status"] == "cancelled"
    # the interrupt is still pending; resuming with a value answers it
    assert c.post(f"/v1/tasks/{tid}/resume", json={"value": "late"}).status_code == 202
    assert wait_for(c, tid)["state"]["decision"] == "late"


def test_task_timeout_cancels_with_reason_timeout(serve) -> None:
    s = serve(task_timeout=0.4)
    c = s.client()
    tid = c.post("/v1/tasks", json={"graph": "slow", "input": {"ticks": 400}}).json()["id"]
    t0 = time.monotonic()
    body = wait_for(c, tid, ("cancelled",), timeout=5)
    assert body["reason"] == "timeout" and time.monotonic() - t0 < 3
    events = c.get(f"/v1/tasks/{tid}/events").text
    assert '"status":"cancelled","reason":"timeout"' in events
    quick = c.post("/v1/tasks", json={"graph": "steps", "input": {}}).json()["id"]
    wait_for(c, quick)
