"""Byte limits and budgets (RELIABILITY.md G10, R9; issue 10 item 2)."""

from __future__ import annotations

import json
import sqlite3
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel

from flowstate import (
    END,
    START,
    GraphBuilder,
    Limits,
    NodeContext,
    NodeFailed,
    PayloadTooLarge,
    append,
)


class S(BaseModel):
    text: str = ""
    n: int = 0


def _update_graph(size: int):
    def big(s: S) -> dict:
        return {"text": "x" * size}

    return GraphBuilder(S).add_node(big).add_edge(START, "big").add_edge("big", END)


def test_update_limit_boundary(tmp_path):
    overhead = len(json.dumps({"text": ""}, separators=(",", ":")))
    limit = 1000
    ok = _update_graph(limit - overhead).compile(
        store=str(tmp_path / "a.db"), limits=Limits(max_update_bytes=limit)
    )
    assert ok.run_sync({}).status == "completed"
    bad = _update_graph(limit - overhead + 1).compile(
        store=str(tmp_path / "b.db"), limits=Limits(max_update_bytes=limit)
    )
    with pytest.raises(NodeFailed) as e:
        bad.run_sync({}, run_id="r")
    assert isinstance(e.value.__cause__, PayloadTooLarge)
    assert "1,001 bytes, over the limit of 1,000 (Limits.max_update_bytes)" in str(e.value)
    with sqlite3.connect(tmp_path / "b.db") as c:
        assert c.execute("SELECT count(*) FROM writes").fetchone()[0] == 0


def test_effect_limit_boundary_and_not_retried(tmp_path):
    calls = {"n": 0}

    def make(size: int):
        async def fetch(s: S, ctx: NodeContext) -> dict:
            async def get() -> str:
                calls["n"] += 1
                return "y" * size

            body = await ctx.effect("get", get)
            return {"n": len(body)}

        g = GraphBuilder(S).add_node(fetch, retry=5)
        return g.add_edge(START, "fetch").add_edge("fetch", END)

    limit = 500
    ok = make(limit - 2).compile(
        store=str(tmp_path / "a.db"), limits=Limits(max_effect_bytes=limit)
    )
    assert ok.run_sync({}).state.n == limit - 2  # JSON string: 2 quote bytes
    calls["n"] = 0
    bad = make(limit - 1).compile(
        store=str(tmp_path / "b.db"), limits=Limits(max_effect_bytes=limit)
    )
    with pytest.raises(NodeFailed, match="max_effect_bytes"):
        bad.run_sync({}, run_id="r")
    assert calls["n"] == 1  # non-retryable
    with sqlite3.connect(tmp_path / "b.db") as c:
        assert c.execute("SELECT count(*) FROM effects").fetchone()[0] == 0


def test_state_limit_on_input(tmp_path):
    app = _update_graph(1).compile(store=str(tmp_path / "a.db"), limits=Limits(max_state_bytes=100))
    with pytest.raises(PayloadTooLarge, match="the input state"):
        app.run_sync({"text": "z" * 200})
    assert app.store.list_runs() == []


def _llm_loop():
    async def think(s: S, ctx: NodeContext) -> dict:
        ctx.add_usage(input_tokens=100, output_tokens=50)  # as an LLM call would
        return {"n": s.n + 1}

    def again(s: S) -> Literal["think", "__end__"]:
        return "think" if s.n < 20 else END

    g = GraphBuilder(S).add_node(think).add_edge(START, "think")
    return g.add_conditional_edges("think", again)


def test_token_budget_pauses_and_resumes_with_a_higher_budget(tmp_path):
    app = _llm_loop().compile(store=str(tmp_path / "a.db"), limits=Limits(token_budget=1000))
    r = app.run_sync({}, run_id="t")
    assert r.status == "paused" and "token budget: 1,050 of 1,000" in (r.reason or "")
    assert r.state.n == 7
    assert app.get_run("t").error.startswith("token budget")
    # resume keeps the stored budget: still paused
    assert app.resume_sync("t").status == "paused"
    r2 = app.resume_sync("t", limits=Limits(token_budget=10_000))
    assert r2.status == "completed" and r2.state.n == 20
    total = sum(
        h.usage.get("input_tokens", 0) + h.usage.get("output_tokens", 0) for h in app.history("t")
    )
    assert total == 20 * 150


def test_cost_budget(tmp_path):
    limits = Limits(cost_budget=0.01, input_price_per_mtok=3.0, output_price_per_mtok=15.0)
    app = _llm_loop().compile(store=str(tmp_path / "a.db"), limits=limits)
    r = app.run_sync({})
    # each step costs (100*3 + 50*15)/1e6 = $0.00105 -> 10 steps reach $0.0105
    assert r.status == "paused" and r.state.n == 10 and "cost budget" in (r.reason or "")


def test_cost_budget_counts_the_spend_before_a_resume(tmp_path):
    """The cost committed before a pause is priced again on resume (``Progress.cost_usd``
    rebuilt from the stored usage): the same budget pauses at once, a higher one lets the
    run go on until the total reaches it."""
    limits = Limits(cost_budget=0.01, input_price_per_mtok=3.0, output_price_per_mtok=15.0)
    app = _llm_loop().compile(store=str(tmp_path / "a.db"), limits=limits)
    assert app.run_sync({}, run_id="c").state.n == 10
    again = app.resume_sync("c")
    assert again.status == "paused" and again.state.n == 10 and "$0.0105" in (again.reason or "")
    more = app.resume_sync("c", limits=limits.model_copy(update={"cost_budget": 0.015}))
    # 15 steps cost $0.01575, the first total at or over $0.015
    assert more.status == "paused" and more.state.n == 15


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError):
        Limits(max_update_bytes=0)
    with pytest.raises(ValueError):
        Limits(unknown=1)  # type: ignore[call-arg]


class Grow(BaseModel):
    parts: Annotated[list[str], append] = []
    n: int = 0


def _growing(chunk: int, steps: int):
    def grow(s: Grow) -> dict:
        return {"parts": "y" * chunk, "n": s.n + 1}

    def again(s: Grow) -> Literal["grow", "__end__"]:
        return "grow" if s.n < steps else END

    g = GraphBuilder(Grow).add_node(grow).add_edge(START, "grow")
    return g.add_conditional_edges("grow", again)


def _state_limit_case(tmp_path, chunk: int, steps: int, limit: int) -> None:
    """Issue 16 item 9: the state grows past ``max_state_bytes`` between snapshots; the
    step that takes it over the limit fails, and nothing after it is committed."""
    app = _growing(chunk, steps).compile(
        store=str(tmp_path / "g.db"), limits=Limits(max_state_bytes=limit)
    )
    with pytest.raises(NodeFailed, match="max_state_bytes") as ei:
        app.run_sync({}, run_id="g")
    assert isinstance(ei.value.__cause__, PayloadTooLarge)
    run = app.store.get_run("g")
    assert run.status == "failed"
    state = app.get_state("g")
    assert len(state.model_dump_json()) <= limit  # the committed state stays under it
    over = limit // chunk + 1  # the step whose state passes the limit
    assert state.n < over + 1 and run.head_step <= over


def test_state_limit_on_every_commit_between_snapshots(tmp_path):
    _state_limit_case(tmp_path, chunk=100_000, steps=10, limit=350_000)


@pytest.mark.slow
def test_state_limit_on_every_commit_full_size(tmp_path):
    _state_limit_case(tmp_path, chunk=3 << 20, steps=30, limit=64 << 20)
