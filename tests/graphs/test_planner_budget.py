"""Issue 15 item 3, the reported case: a sequential planner whose executor is a ReAct
subgraph stops at its token budget, counted over the whole run tree."""

from __future__ import annotations

import json
from typing import Any

from flowstate import Limits
from flowstate.graphs import sequential_planner
from flowstate.llm import ScriptedLLM
from flowstate.nodes import run_usage

from .conftest import planner_script

GOAL = {"goal": "How many people live in Lyon and Nantes?"}


def _plan(prompt: str) -> str:
    return "1. Find Lyon\n2. Find Nantes\n3. Add them\n4. Check the sum\n5. Report"


def _costly() -> ScriptedLLM:
    """The planner script, every answer costing 100 tokens."""
    base = planner_script(_plan)

    def script(req: Any) -> Any:
        item = base(req)
        assert isinstance(item, str)
        return {"text": item, "usage": {"input_tokens": 80, "output_tokens": 20}}

    return ScriptedLLM(script)


def _total(u: dict[str, int]) -> int:
    return u["input_tokens"] + u["output_tokens"]


def _spent(store: Any, run_id: str) -> int:
    """Tokens of committed activations anywhere in the run tree (a paused subgraph's
    activation has not committed yet, so its child run is counted directly)."""
    writes = store.writes(run_id)
    total = sum(
        _total({"input_tokens": 0, "output_tokens": 0, **json.loads(w.usage)}) for w in writes
    )
    committed = {f"{run_id}/{w.step}/{w.task_path}" for w in writes}
    for c in store.child_run_ids(run_id):
        if c not in committed:
            total += _spent(store, c)
    return total


def test_a_planner_with_react_executors_stops_at_its_budget(tmp_path) -> None:
    free = sequential_planner(_costly()).compile(store=str(tmp_path / "free.db"))
    done = free.run_sync(GOAL, run_id="free")
    assert done.status == "completed"
    full = _total(run_usage(free.store, "free"))
    assert full == 600  # one planning call and one ReAct call per step, 100 tokens each
    budget = 250

    app = sequential_planner(_costly()).compile(store=str(tmp_path / "b.db"))
    r = app.run_sync(GOAL, run_id="r", limits=Limits(token_budget=budget))
    assert r.status == "paused" and "token budget" in (r.reason or ""), r.reason
    # it stops at the first step boundary at or over the budget, anywhere in the tree
    used = _spent(app.store, "r")
    assert 250 <= used <= 300, used  # not 600: the ReAct subgraphs count against it
    r = app.resume_sync("r", limits=Limits(token_budget=10 * full))
    while r.status == "paused":  # budgets of descendants are passed up as pauses
        r = app.resume_sync("r", limits=Limits(token_budget=10 * full))
    assert r.status == "completed"
    assert _total(run_usage(app.store, "r")) == full
