"""update_state and resume(update=, goto=) on every store backend (SQLite file, real
PostgreSQL, in memory): the edit uses only the store contract."""

from __future__ import annotations

import asyncio

from tests.store.conftest import (  # noqa: F401 - fixtures
    _drop_postgres_schemas,
    _forget_memory_stores,
    store_factory,
)

from .graphs import routed_graph


def test_edit_route_resume_and_replay_on_every_backend(store_factory) -> None:  # noqa: F811
    store = store_factory()
    app = routed_graph().compile(store=store, interrupt_before=("b",))
    app.run_sync({"n": 1}, run_id="r1")
    app.update_state("r1", {"note": "x"}, by="op")
    app.update_state("r1", {"n": 40}, as_node="a")
    done = app.resume_sync("r1")
    assert done.state.log == ["a:1", "c:40"] and done.state.note == "x"
    edits = [(h.step, h.node, h.by) for h in app.history("r1") if h.edit]
    assert edits == [(1, "__edit__", "op"), (1, "a", None)]
    assert asyncio.run(app.replay("r1")).identical
    app.run_sync({"n": 1}, run_id="r2")
    assert app.resume_sync("r2", update={"n": 2}, goto=["c"]).state.log == ["a:1", "c:2"]
    assert asyncio.run(app.replay("r2")).identical
