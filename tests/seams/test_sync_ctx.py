"""Item 6 of issue 15: a sync node's ctx.effect / ctx.interrupt work (same journal, same
semantics); an un-awaited coroutine is never stored or silently dropped."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, NodeFailed, append
from flowstate.engine import pending_interrupts


class S(BaseModel):
    log: Annotated[list[str], append] = []
    anything: Any = None


CALLS: list[str] = []


def _fetch(x: int) -> dict:
    CALLS.append(f"fetch{x}")
    return {"x": x * 10}


def sync_graph() -> GraphBuilder[S]:
    def work(s: S, ctx: NodeContext) -> dict:
        got = ctx.effect("fetch", _fetch, 4)
        ok = ctx.interrupt({"approve": got["x"]})
        return {"log": [f"got={got['x']}", f"ok={ok}"]}

    g = GraphBuilder(S, name="sync_ctx")
    g.add_node(work).add_edge(START, "work").add_edge("work", END)
    return g


def test_sync_node_effect_and_interrupt_work_like_async(tmp_path):
    CALLS.clear()
    app = sync_graph().compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({}, run_id="r")
    # the approval is not skipped: the run pauses, with the effect journaled
    assert r.status == "paused"
    assert [(i.id, i.payload) for i in r.interrupts] == [("0:work:0", {"approve": 40})]
    assert [e.name for e in app.store.effects("r")] == ["fetch"]
    r = app.resume_sync("r", "yes")
    assert r.status == "completed"
    assert r.state.log == ["got=40", "ok=yes"]
    assert CALLS == ["fetch4"]  # served from the journal on resume: performed once
    assert pending_interrupts(app.store, "r") == []
    # offline replay serves the effect and the answer from the recording
    report = asyncio.run(app.replay("r"))
    assert report.identical and CALLS == ["fetch4"]


def test_an_unawaited_coroutine_fails_at_once_with_what_to_write(tmp_path):
    async def later() -> str:
        return "x"

    def bad(s: S) -> dict:
        return {"anything": later()}

    def bad2(s: S):
        return later()

    for fn, needle in ((bad, "un-awaited coroutine"), (bad2, "returned a coroutine")):
        g = GraphBuilder(S, name="bad")
        g.add_node("n", fn).add_edge(START, "n").add_edge("n", END)
        app = g.compile(store=str(tmp_path / f"{needle[:3]}.db"))
        with pytest.raises(NodeFailed) as e:
            app.run_sync({}, run_id="r")
        assert needle in str(e.value) and "await" in str(e.value)
        assert "cannot be stored as JSON" not in str(e.value)
