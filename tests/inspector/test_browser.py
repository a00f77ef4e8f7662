"""The inspector driven as a person drives it, in Debian's headless Chromium.

Each test writes a screenshot of every view it visits (``tests/inspector/screenshots``,
or ``$FLOWSTATE_SCREENSHOTS``) and fails on any console error or uncaught exception.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from .conftest import TOKEN, wait_status
from .graphs import CHANGED

EXPECT_TIMEOUT = 15_000


def until(check: Callable[[], bool], what: str, timeout: float = EXPECT_TIMEOUT / 1000) -> None:
    """Poll the page from Python (the page's CSP forbids evaluating strings in it)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def login(p: Any) -> None:
    page = p.page
    page.goto(p.base + "/ui/")
    page.wait_for_url(re.compile(r"/ui/login$"))
    p.shot("01-login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#runs")


def test_review_run_end_to_end(served: Any, open_page: Any) -> None:
    """Log in, open a run, click a step and read its diff and its LLM conversation, answer
    the interrupt twice (a rejection loops), replay, fork with a patch, open a subgraph."""
    server, client = served
    task = client.post("/v1/tasks", json={"graph": "review", "input": {"topic": "ducks"}})
    tid = task.json()["id"]
    wait_status(client, tid, {"paused"})
    for n in (3, 5):
        client.post("/v1/tasks", json={"graph": "counter", "input": {"target": n}})

    p = open_page(server.url)
    page = p.page
    page.set_default_timeout(EXPECT_TIMEOUT)
    login(p)
    # the session cookie is HttpOnly, Secure and SameSite=Strict
    (cookie,) = p.context.cookies()
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert page.locator("#runs tbody tr").count() == 3
    row = page.locator(f"#runs tr[data-run='{tid}']")
    assert "paused" in row.inner_text()
    assert "$0.0008" in row.inner_text()  # 120 in + 30 out tokens at $3/$15 per Mtok
    p.shot("02-runs")

    # filters: only completed runs of the counter graph
    page.select_option("#filter-status", "completed")
    page.fill("#filter-graph", "counter")
    page.click("#filters button[type=submit]")
    until(lambda: page.locator("#runs tbody tr").count() == 2, "the filtered list")
    assert tid not in page.locator("#runs").inner_text()

    # search by id opens the run
    page.fill("#search-id", tid)
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#graph svg")
    assert page.locator("#run-id").inner_text() == tid
    approve = page.locator("#graph .fs-node[data-node='approve']")
    assert approve.get_attribute("data-status") == "interrupted"
    assert (
        page.locator("#graph .fs-node[data-node='research']").get_attribute("data-status") == "ran"
    )
    assert page.locator("#graph .fs-node[data-node='research']").get_attribute("data-visits") == "1"
    assert page.locator("#interrupts .interrupt.pending").count() == 1
    assert "Publish this draft?" in page.locator("#interrupts").inner_text()
    p.shot("03-run-interrupted")

    # click step 1 (write): the diff from the previous step
    page.click("#timeline tr.activation[data-step='1']")
    page.wait_for_selector("#diff")
    assert "State after step 1 (write)" in page.locator("#detail-title").inner_text()
    diff = page.locator("#diff").inner_text()
    assert "draft" in diff and "A 7-word draft on ducks" in diff and "rounds" in diff
    p.shot("04-step-diff")
    page.click("#tab-state")
    state = json.loads(page.locator("#state-json").inner_text())
    assert state["draft"] == "A 7-word draft on ducks" and state["rounds"] == 1

    # step 0 (research): the effects journal shows the LLM call as a conversation
    page.click("#timeline tr.activation[data-step='0']")
    page.wait_for_selector("#tab-effects")
    page.click("#tab-effects")
    chat = page.locator("#effects .effect.llm")
    assert "You are a careful researcher." in chat.locator(".msg.system").inner_text()
    assert "Research ducks" in chat.locator(".msg.user").inner_text()
    assert "Three facts about ducks" in chat.locator(".msg.assistant.reply").inner_text()
    p.shot("05-effects-conversation")

    # answer the interrupt with a rejection: the run loops to write and asks again
    page.fill("#interrupts textarea.answer", '{"ok": false, "note": "more ducks"}')
    page.click("#interrupts .answer-btn")
    write = page.locator("#graph .fs-node[data-node='write']")
    until(
        lambda: (
            write.get_attribute("data-visits") == "2"
            and page.locator("#interrupts .interrupt.pending").count() == 1
        ),
        "the second round's interrupt",
    )
    assert page.locator("#graph .fs-node[data-node='approve']").get_attribute("data-visits") == "1"
    p.shot("06-answered-once")
    page.fill("#interrupts textarea.answer", "true")
    page.click("#interrupts .answer-btn")
    page.wait_for_selector("#run-header h1 .badge.completed")
    assert wait_status(client, tid, {"completed"})["state"]["approved"] is True
    assert (
        page.locator("#graph .fs-node[data-node='approve']").get_attribute("data-status") == "ran"
    )
    p.shot("07-completed")

    # replay: identical, from the journal
    page.click("#act-replay")
    page.wait_for_selector("#replay-report.identical")
    assert "9 activations" in page.locator("#replay-report").inner_text()  # 7 + 2 nested
    p.shot("08-replay")

    # change the write node's code: the replay now reports where and how it diverges
    CHANGED["write"] = True
    try:
        page.click("#act-replay")
        page.wait_for_selector("#replay-report.diverged")
    finally:
        CHANGED["write"] = False
    report = page.locator("#replay-report").inner_text()
    assert "Diverged at step 1, node 'write'" in report
    assert "draft" in report and "an improved 7-word draft on ducks" in report
    p.shot("08b-replay-diverged")

    # fork from step 1 with a patched topic: a new linked run that re-runs from write
    page.click("#timeline tr.activation[data-step='1']")
    page.click("#tab-fork")
    page.fill("#fork-at", "1")
    page.fill("#fork-patch", '{"topic": "geese"}')
    page.click("#fork-btn")
    page.wait_for_selector("#links a[data-relation='fork_parent']")
    fork_id = page.locator("#run-id").inner_text()
    assert fork_id != tid
    forked = wait_status(client, fork_id, {"paused"})
    assert forked["state"]["topic"] == "geese"
    page.wait_for_selector("#interrupts .interrupt.pending")
    assert page.locator("#graph .fs-node[data-node='research']").get_attribute("data-status") == (
        "never_reached"
    )
    p.shot("09-fork")

    # the parent lists the fork; its subgraph's steps show nested, and the run opens
    page.click("#links a[data-relation='fork_parent']")
    page.wait_for_selector(f"#links a[data-relation='fork'][href*='{fork_id}']")
    page.click("#timeline tr.activation[data-step='2'] button.expand")
    nested = page.locator(f"#timeline tr.nested[data-parent='{tid}/2/polish']")
    nested.first.wait_for()
    assert nested.count() == 1 and "tidy" in nested.inner_text()
    p.shot("10a-nested-subgraph-steps")
    page.click("#timeline tr.activation[data-step='2'] a.child-link")
    page.wait_for_selector("#links a[data-relation='subgraph_parent']")
    assert page.locator("#run-id").inner_text() == f"{tid}/2/polish"
    assert page.locator("#graph .fs-node[data-node='tidy']").get_attribute("data-status") == "ran"
    page.click("#timeline tr.activation[data-step='0']")
    page.wait_for_selector("#diff")
    assert "polished" in page.locator("#diff").inner_text()
    p.shot("10-subgraph")

    assert p.errors == []


def test_live_updates_pause_cancel_resume(served: Any, open_page: Any) -> None:
    """A running run updates without a reload (SSE); pause, resume and cancel from the page."""
    server, client = served
    tid = client.post("/v1/tasks", json={"graph": "waiter", "input": {"seconds": 0.15}}).json()[
        "id"
    ]
    p = open_page(server.url)
    page = p.page
    page.set_default_timeout(EXPECT_TIMEOUT)
    login(p)
    page.goto(f"{server.url}/ui/#/run/{tid}")
    page.wait_for_selector("#live")
    rows = page.locator("#timeline tr.activation")
    until(lambda: rows.count() >= 3, "three activations")
    seen = rows.count()
    until(lambda: rows.count() > seen, "a live update")
    assert page.locator("#graph .fs-node[data-node='tick']").get_attribute("data-status") in (
        "running",
        "ran",
    )
    p.shot("11-live")
    page.click("#act-pause")
    page.wait_for_selector("#run-header h1 .badge.paused")
    assert "pause requested" in page.locator("#run-reason").inner_text()
    paused_at = page.locator("#timeline tr.activation").count()
    p.shot("12-paused")
    page.click("#act-resume")
    until(lambda: rows.count() > paused_at, "activations after resume")
    page.click("#act-cancel")
    page.wait_for_selector("#run-header h1 .badge.cancelled")
    assert wait_status(client, tid, {"cancelled"})["status"] == "cancelled"
    assert p.errors == []
