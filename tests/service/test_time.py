"""The service's side of durable time: ``/v1/schedules`` and its time loop, which fires
due schedules and wakes runs whose timer or interrupt deadline has come (a TestClock moves
time; the loop looks every second of real time)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext
from flowstate.clock import TestClock, use_clock
from flowstate.service import GraphRegistry, create_app

from .conftest import ThreadServer

T0 = 1_800_000_000.0


class Nap(BaseModel):
    n: int = 0
    answer: str = ""


async def nap(s: Nap, ctx: NodeContext) -> dict[str, Any]:
    await ctx.sleep(600)
    answer = await ctx.interrupt("ok?", timeout=60, default="no answer")
    return {"n": s.n + 1, "answer": answer}


def _app(db: str) -> Any:
    g = GraphBuilder(Nap, name="nap")
    g.add_node("nap", nap)
    g.add_edge(START, "nap").add_edge("nap", END)
    return create_app(GraphRegistry([g.compile()]), db=db)


def _until(cond: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_service_wakes_sleepers_times_out_deadlines_and_fires_schedules(tmp_path):
    with use_clock(TestClock(T0)) as clock, ThreadServer(_app(str(tmp_path / "s.db"))) as s:
        c = httpx.Client(base_url=s.url, timeout=30)
        tid = c.post("/v1/tasks", json={"graph": "nap", "input": {}}).json()["id"]
        _until(lambda: c.get(f"/v1/tasks/{tid}").json()["status"] == "paused", "the sleep")
        clock.advance(600)
        task = _until(
            lambda: (t := c.get(f"/v1/tasks/{tid}").json())["interrupts"] and t, "the wake"
        )
        assert task["interrupts"][0]["deadline"] == T0 + 600 + 60
        clock.advance(60)
        done = _until(
            lambda: (t := c.get(f"/v1/tasks/{tid}").json())["status"] == "completed" and t,
            "the deadline",
        )
        assert done["state"]["answer"] == "no answer"

        body = {"name": "tick", "graph": "nap", "cron": "*/5 * * * *", "input": {"n": 7}}
        made = c.post("/v1/schedules", json=body)
        assert made.status_code == 201, made.text
        assert c.post("/v1/schedules", json=body).status_code == 409
        bad = c.post("/v1/schedules", json={**body, "name": "bad", "cron": "0 0 30 2 *"})
        assert bad.status_code == 422 and "FS241" in bad.text
        assert [x["name"] for x in c.get("/v1/schedules").json()] == ["tick"]
        assert c.post("/v1/schedules/tick/pause").json()["paused"] is True
        assert c.post("/v1/schedules/tick/resume").json()["paused"] is False
        nxt = c.get("/v1/schedules/tick").json()["next_fire"]
        clock.set(nxt + 1)
        page = _until(
            lambda: [t for t in c.get("/v1/tasks").json()["items"] if t["id"].startswith("tick@")],
            "the firing",
        )
        assert len(page) == 1 and page[0]["status"] in ("running", "paused", "queued")
        assert c.delete("/v1/schedules/tick").status_code == 204
        assert c.get("/v1/schedules/tick").status_code == 404
