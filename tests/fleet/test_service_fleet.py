"""Two enqueue-only services (``create_app(enqueue_only=True)``, real uvicorn servers)
and a real ``flowstate worker`` process share one PostgreSQL schema: the services admit,
read, resume and cancel; only the worker executes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from flowstate.checkpoints import RunQueue
from flowstate.errors import QueueUnavailable
from flowstate.service import create_app
from tests.fleet import fleet_graphs as fg
from tests.fleet.conftest import Fleet
from tests.service.conftest import ThreadServer


def wait_status(c: httpx.Client, tid: str, statuses: tuple[str, ...], timeout: float = 60) -> Any:
    t0 = time.monotonic()
    while True:
        body = c.get(f"/v1/tasks/{tid}").json()
        if body["status"] in statuses:
            return body
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"task {tid} is {body['status']}, not {statuses}, after {timeout}s")
        time.sleep(0.05)


def test_enqueue_only_needs_a_shared_database() -> None:
    with pytest.raises(QueueUnavailable, match=r"FS230.*in-memory"):
        create_app(fg.REGISTRY, db="memory://", enqueue_only=True)


def test_services_enqueue_and_a_worker_executes(fleet: Fleet) -> None:
    graphs = {"chain": fg.chain(3, 0.05), "ask": fg.ask(), "slow": fg.chain(1, 60, "slow")}
    a = ThreadServer(create_app(graphs, db=fleet.url, enqueue_only=True)).__enter__()
    b = ThreadServer(create_app(graphs, db=fleet.url, enqueue_only=True)).__enter__()
    try:
        ca, cb = a.client(), b.client()
        # nothing executes in a service: with no worker, a task stays queued
        tid = ca.post("/v1/tasks", json={"graph": "chain", "input": {}}).json()["id"]
        time.sleep(0.5)
        assert cb.get(f"/v1/tasks/{tid}").json()["status"] == "queued"
        assert [r.run_id for r in RunQueue(fleet.store()).queued()] == [tid]
        fleet.worker("--lease-ttl", "5", env={"FLEET_NODES": "3", "FLEET_SLEEP": "0.05"})
        body = wait_status(cb, tid, ("completed",))  # read through the other service
        assert body["state"]["seen"] == ["n0", "n1", "n2"]
        # an interrupt answered through a service reaches the worker by the queue
        qid = cb.post("/v1/tasks", json={"graph": "ask", "input": {}}).json()["id"]
        wait_status(ca, qid, ("paused",))
        r = ca.post(f"/v1/tasks/{qid}/resume", json={"value": "yes"})
        assert r.status_code == 202 and r.json()["status"] == "queued"
        assert wait_status(cb, qid, ("completed",))["state"]["answer"] == "yes"
        # the "slow" graph is not in the worker's registry: it stays queued, and a
        # cancel through a service takes it off the queue
        sid = ca.post("/v1/tasks", json={"graph": "slow", "input": {}}).json()["id"]
        time.sleep(0.3)
        assert cb.get(f"/v1/tasks/{sid}").json()["status"] == "queued"
        assert cb.post(f"/v1/tasks/{sid}/cancel").json()["status"] == "cancelled"
        assert ca.get("/v1/tasks", params={"status": "completed"}).json()["items"]
    finally:
        a.__exit__()
        b.__exit__()
