"""stream(mode=...): the state after each step, updates, tokens, or every event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowstate.engine import Subscription
from flowstate.errors import ConfigError

from .graphs import S, routed_graph


async def _collect(app: Any, **kw: Any) -> list[Any]:
    return [e async for e in app.stream({"n": 1}, **kw)]


def test_values_mode_carries_the_state_after_each_step(db_path):
    app = routed_graph().compile(store=str(db_path))
    events = asyncio.run(_collect(app, mode="values"))
    assert [e.kind for e in events] == [
        "run_started",
        "step_finished",
        "step_finished",
        "run_finished",
    ]
    states = [S.model_validate(e.state) for e in events if e.kind == "step_finished"]
    assert states == [app.state_at(events[0].run_id, 1), app.state_at(events[0].run_id, 2)]
    assert states[-1].log == ["a:1", "b:saw "]


def test_modes_combine_and_default_is_every_event_without_state(db_path):
    app = routed_graph().compile(store=str(db_path))
    both = asyncio.run(_collect(app, mode=["updates", "values"]))
    assert {e.kind for e in both} == {
        "run_started",
        "node_finished",
        "step_finished",
        "run_finished",
    }
    assert all(e.state is not None for e in both if e.kind == "step_finished")
    updates = asyncio.run(_collect(app, mode="updates"))
    assert [e.update for e in updates if e.kind == "node_finished"] == [
        {"log": ["a:1"]},
        {"log": ["b:saw "]},
    ]
    plain = asyncio.run(_collect(app))
    kinds = {e.kind for e in plain}
    assert {"node_started", "effect_recorded", "step_finished"} <= kinds
    assert all(e.state is None for e in plain if e.kind == "step_finished")


def test_a_subscription_works_for_resume_and_names_a_bad_mode(db_path):
    app = routed_graph().compile(store=str(db_path), interrupt_before=("b",))
    app.run_sync({"n": 1}, run_id="r1")
    seen: list[Any] = []
    app.resume_sync("r1", on_event=Subscription(seen.append, "values"))
    assert [e.kind for e in seen] == ["run_started", "step_finished", "run_finished"]
    assert seen[1].state["log"] == ["a:1", "b:saw "]
    with pytest.raises(ConfigError, match="stream mode 'messages' is not one of"):
        Subscription(seen.append, "messages")  # type: ignore[arg-type]


class Counted(S):
    """Counts the JSON dumps of the whole state a stream asks for."""

    def model_dump(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("mode") == "json":
            DUMPS.append(1)
        return super().model_dump(*args, **kwargs)


DUMPS: list[int] = []


def test_no_values_mode_serialises_no_state(db_path):
    from flowstate import END, START, GraphBuilder

    from .graphs import a

    g = GraphBuilder(Counted).add_node(a)
    g.add_edge(START, "a").add_edge("a", END)
    app = g.compile(store=str(db_path))
    DUMPS.clear()
    asyncio.run(_collect(app))
    asyncio.run(_collect(app, mode=["updates", "tokens"]))
    assert DUMPS == []
    asyncio.run(_collect(app, mode="values"))
    assert DUMPS == [1]  # one step, one dump
