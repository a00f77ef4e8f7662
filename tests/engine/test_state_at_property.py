"""``state_at`` reads the nearest snapshot (a small state has one at every step) and folds
the updates after it: whatever the snapshots, the answer must be the full fold of every
update from step 0, for every step, with reducers, ``Overwrite`` and edits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, Overwrite, append


class Log(BaseModel):
    n: int = 0
    items: Annotated[list[str], append] = []
    note: str = ""


def _graph(plan: list[tuple[int, bool]]) -> GraphBuilder[Log]:
    async def work(s: Log) -> dict[str, Any]:
        size, replace = plan[s.n]
        item = f"{s.n}:" + "x" * size
        return {"n": s.n + 1, "items": Overwrite([item]) if replace else [item]}

    def again(s: Log) -> str:
        return "work" if s.n < len(plan) else END

    g = GraphBuilder(Log, name="state_at_property")
    g.add_node(work)
    g.add_edge(START, "work")
    g.add_conditional_edges("work", again, targets=["work", END])
    return g


def _full_fold(app: Any, run_id: str, step: int) -> Log:
    """The state at ``step`` folded from step 0's snapshot, ignoring every later one."""
    store = app.reader.store
    real = store.last_snapshot
    store.last_snapshot = lambda rid, at: real(rid, 0)
    try:
        return app.reader.rebuild(run_id, step).state
    finally:
        del store.last_snapshot


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(st.tuples(st.integers(0, 300), st.booleans()), min_size=1, max_size=12),
    edits=st.lists(st.text(max_size=20), max_size=3),
)
def test_state_at_every_step_is_the_full_fold(
    tmp_path: Path, plan: list[tuple[int, bool]], edits: list[str]
) -> None:
    db = tmp_path / f"s{abs(hash((tuple(plan), tuple(edits))))}.db"
    app = _graph(plan).compile(store=str(db))
    r = asyncio.run(app.run({}))
    assert r.status == "completed" and r.state.n == len(plan)
    for i, text in enumerate(edits):  # edits at the head step: __edit__.<n> rows
        app.update_state(r.run_id, {"note": text, "items": [f"edit{i}"]})
    head = app.store.get_run(r.run_id).head_step
    snapshots = sum(1 for s in app.store.steps(r.run_id) if s.snapshot is not None and s.step > 0)
    for k in range(head + 1):
        assert app.state_at(r.run_id, k) == _full_fold(app, r.run_id, k), (k, snapshots)
    final = app.get_state(r.run_id)
    assert final.note == (edits[-1] if edits else "")
    assert final.items[-len(edits) :] == [f"edit{i}" for i in range(len(edits))] or not edits
    app.store.close()
