"""The four crews as multi-turn chats on a thread: a later turn's agents see the earlier
turns (through the task), the log goes on, each turn's bookkeeping counts only its own
messages, and every turn replays without calling a model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from flowstate.graphs import crew_turn
from flowstate.graphs._crew_common import turn_log
from tests.graphs.test_crews_scripts import (
    Crew,
    coordinator_world,
    debate_world,
    orchestrator_world,
    pipeline_world,
)

WORLDS: dict[str, Callable[[], Crew]] = {
    "orchestrator": orchestrator_world,
    "debate": debate_world,
    "pipeline": pipeline_world,
    "coordinator": coordinator_world,
}


@pytest.mark.parametrize("kind", sorted(WORLDS))
def test_a_crew_chats_over_turns_of_a_thread(kind: str, tmp_path: Path) -> None:
    crew = WORLDS[kind]()
    app = crew.builder.compile(store=tmp_path / "crew.db")
    first = app.run_sync(crew.input, thread_id="t")
    assert first.state.status == "done" and first.state.answer
    second = app.run_sync(crew_turn(first.state, "And Nantes?"), thread_id="t")
    state = second.state
    assert state.status == "done" and state.answer
    # the task carries the conversation: every agent prompted with it sees turn 1
    assert state.task.startswith("And Nantes?\n\nEarlier in this conversation:\n- user: ")
    assert f"- crew: {first.state.answer}" in state.task
    asked = [r for m in crew.models.values() for r in m.requests if "And Nantes?" in str(r)]
    assert asked and all("Earlier in this conversation" in str(r) for r in asked)
    # the log goes on; the second turn's own part has the shape of the first's
    assert state.log[: len(first.state.log)] == first.state.log
    shape = [(m.type, m.sender, m.recipient) for m in turn_log(state.log)]
    assert shape == [(m.type, m.sender, m.recipient) for m in first.state.log]
    third = app.run_sync(crew_turn(state, "And Lille?"), thread_id="t")
    assert third.state.task.count("- user: ") == 2  # earlier turns, not nested
    for model in crew.models.values():
        model.broken = True  # a replay that called any model would fail
    for r in (first, second, third):
        assert asyncio.run(app.replay(r.run_id)).identical
