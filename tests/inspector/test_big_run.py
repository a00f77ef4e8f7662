"""A 10,000-step run opens in under a second: the overview reads counts, not rows; the
timeline is paged; a state is rebuilt from the nearest snapshot, one step at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flowstate.service import create_app
from tests.service.conftest import ThreadServer

from .graphs import counter_graph, registry

STEPS = 10_000
BUDGET_SECONDS = 1.0


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    db = tmp_path_factory.mktemp("big") / "runs.db"
    graph = counter_graph().compile(store=str(db), max_steps=STEPS + 10)
    # in a thread of its own: Playwright's sync API may hold this thread's event loop
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(asyncio.run, graph.run({"target": STEPS})).result()
    assert result.status == "completed" and result.step == STEPS
    yield db, result.run_id


def test_the_api_serves_a_10000_step_run_in_under_a_second(big_run: tuple[Path, str]) -> None:
    db, rid = big_run
    with TestClient(create_app(registry(), db=str(db))) as c:
        t = time.perf_counter()
        o = c.get(f"/v1/tasks/{rid}/overview").json()
        first = c.get(f"/v1/tasks/{rid}/history?start=0&limit=100").json()
        opened = time.perf_counter() - t
        last = c.get(f"/v1/tasks/{rid}/history?start=9900&limit=100").json()
        mid = c.get(f"/v1/tasks/{rid}/state?step=5001").json()
        t = time.perf_counter()
        # the worst case: 999 updates past the nearest snapshot (one every 1,000 steps)
        end = c.get(f"/v1/tasks/{rid}/state?step={STEPS}").json()
        deepest = time.perf_counter() - t
    assert o["activations"] == STEPS and o["nodes"] == [
        {"name": "bump", "kind": "node", "visits": STEPS, "status": "ran"}
    ]
    assert len(first["items"]) == 100 and first["next_start"] == 100
    assert last["items"][-1]["step"] == STEPS - 1 and last["next_start"] is None
    assert mid["state"]["n"] == 5001 and mid["diff"][0]["after"] == 5001
    assert end["state"]["n"] == STEPS
    assert end["diff"] == [
        {"path": "n", "op": "change", "before": STEPS - 1, "after": STEPS},
        {
            "path": "last",
            "op": "change",
            "before": f"bumped to {STEPS - 1}",
            "after": f"bumped to {STEPS}",
        },
    ]
    assert opened < BUDGET_SECONDS, f"overview and first timeline page took {opened:.3f} s"
    assert deepest < BUDGET_SECONDS, f"the state at step {STEPS} took {deepest:.3f} s"


def test_the_page_opens_a_10000_step_run_in_under_a_second(
    big_run: tuple[Path, str], open_page: Any
) -> None:
    db, rid = big_run
    with ThreadServer(create_app(registry(), db=str(db))) as server:
        p = open_page(server.url)
        page = p.page
        page.goto(server.url + "/ui/")  # the page's own files, loaded once
        page.wait_for_selector("#runs")
        t = time.perf_counter()
        page.goto(f"{server.url}/ui/#/run/{rid}")
        page.wait_for_selector("#timeline tr.activation >> nth=99")
        opened = time.perf_counter() - t
        assert page.locator("#timeline tr.activation").count() == 100
        assert "steps 0–99 of 0–10000" in page.locator("#timeline-range").inner_text()
        # jump to a step far in: its page loads, its state and diff come per step
        t = time.perf_counter()
        page.fill("#goto-step", "7654")
        page.click("#goto-btn")
        page.wait_for_selector("#detail-title >> text=State after step 7654")
        page.wait_for_selector("#diff")
        jumped = time.perf_counter() - t
        assert "7655" in page.locator("#diff").inner_text()
        p.shot("13-big-run")
        assert p.errors == []
    assert opened < BUDGET_SECONDS, f"the run page took {opened:.3f} s"
    # a page of steps, then the state and the effects of one: two budgets' worth at most
    assert jumped < 2 * BUDGET_SECONDS, f"jumping to step 7654 took {jumped:.3f} s"
