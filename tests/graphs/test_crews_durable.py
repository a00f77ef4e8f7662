"""Crews are ordinary durable graphs: a failing agent fails its node and the run resumes once
it is fixed, a crash anywhere resumes without calling a model twice, and a finished run replays
offline with every model broken."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from flowstate import NodeFailed
from flowstate.graphs._crews import agent_from_llm, coordinator_crew
from flowstate.llm import LLMError
from flowstate.testing import assert_replays, assert_resumable
from tests.graphs.test_crews_scripts import (
    Crew,
    Model,
    calculator_agent,
    coordinator_world,
    debate_world,
    orchestrator_world,
    pipeline_world,
)

SMALL_CREWS: dict[str, Callable[[], Crew]] = {
    "orchestrator": orchestrator_world,
    "debate": lambda: debate_world(n_agents=2, rounds=1),
    "pipeline": lambda: pipeline_world(("researcher", "writer")),
    "coordinator": coordinator_world,
}


@pytest.fixture
def fast_tempdir(fast_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """assert_resumable makes one database per crash point: keep them on tmpfs."""
    monkeypatch.setattr(tempfile, "tempdir", str(fast_tmp))
    return fast_tmp


def run_status(app: object, run_id: str) -> str:
    return app.store.find_run(run_id).status  # type: ignore[attr-defined]


def test_a_failing_specialist_fails_its_node_and_resumes_once_fixed(db_path: Path) -> None:
    crew = orchestrator_world()
    crew.models["writer"].broken = True
    app = crew.compile(store=str(db_path))

    with pytest.raises(NodeFailed) as info:
        app.run_sync(crew.input, run_id="crew-1")

    assert info.value.node == "writer"
    assert isinstance(info.value.__cause__, LLMError)
    assert run_status(app, "crew-1") == "failed"
    # the sibling that ran in the same step committed; nothing after it ran
    assert [h.node for h in app.history("crew-1")] == ["orchestrate", "researcher"]

    crew.models["writer"].broken = False
    result = asyncio.run(crew.compile(store=str(db_path)).resume("crew-1"))

    assert (result.status, result.state.status) == ("completed", "done")
    assert "[writer] writer on write the summary" in result.state.answer
    # only the failed specialist was asked again: no model call was repeated
    assert crew.calls() == {
        "researcher": 1,
        "writer": 2,  # the failed attempt and the one after the fix
        "critic": 0,
        "orchestrator": 1,
        "synthesiser": 1,
    }
    assert len(crew.models["writer"].requests) == 2


def test_a_failing_agent_mid_delegation_resumes_where_it_stopped(db_path: Path) -> None:
    crew = coordinator_world(("researcher", "writer", "critic"))
    crew.models["writer"].broken = True
    app = crew.compile(store=str(db_path))

    with pytest.raises(NodeFailed) as info:
        app.run_sync(crew.input, run_id="crew-2")
    assert info.value.node == "writer"
    state = app.get_state("crew-2")
    assert [d.delegate.target for d in state.stack] == ["writer"]

    crew.models["writer"].broken = False
    result = asyncio.run(app.resume("crew-2"))

    assert result.state.status == "done"
    assert [m.recipient for m in result.state.log if m.type == "delegate"] == [
        "researcher",
        "writer",
        "critic",
    ]
    # coordinator turns before the failure were not asked again
    assert crew.calls()["coordinator"] == 4
    assert crew.calls()["researcher"] == 1


@pytest.mark.parametrize("kind", sorted(SMALL_CREWS))
def test_crews_resume_after_a_crash_anywhere(kind: str, fast_tempdir: Path) -> None:
    crew = SMALL_CREWS[kind]()
    report = assert_resumable(crew.compile(), crew.input)
    assert report.crash_points > 20
    assert "effect.before_call" in report.points_reached


def test_a_crew_with_a_graph_agent_resumes_inside_the_subgraph(fast_tempdir: Path) -> None:
    calc = Model("calc", lambda request: "42")
    coordinator = Model(
        "coordinator",
        lambda r: (
            "ANSWER: 42" if "calculator →" in r.messages[0].text else "DELEGATE calculator: 6 * 7"
        ),
    )
    app = coordinator_crew(coordinator.llm, [calculator_agent(calc)]).compile(store=":memory:")
    report = assert_resumable(app, {"task": "6 * 7?"})
    # crash points inside the child run (prepare, think, check, report) were reached too
    assert report.crash_points > 25


@pytest.mark.parametrize("kind", sorted(SMALL_CREWS))
def test_crews_replay_offline_with_every_model_broken(kind: str, db_path: Path) -> None:
    crew = SMALL_CREWS[kind]()
    app = crew.compile(store=str(db_path))
    result = app.run_sync(crew.input)
    assert result.state.status == "done"
    calls = crew.calls()

    crew.break_all()
    report = assert_replays(app, result.run_id)

    assert report.identical
    assert crew.calls() == calls  # the replay asked no model anything


def test_replay_of_a_nested_delegation_run_with_models_broken(db_path: Path) -> None:
    lead = Model(
        "lead",
        lambda r: (
            "ANSWER: lead has it"
            if "calculator →" in r.messages[0].text
            else "DELEGATE calculator: 6 * 7"
        ),
    )
    calc = Model("calc", lambda r: "42")
    coordinator = Model(
        "c",
        lambda r: "ANSWER: ok" if "lead →" in r.messages[0].text else "DELEGATE lead: go",
    )
    agents = [agent_from_llm("lead", lead.llm, "You lead."), calculator_agent(calc)]
    app = coordinator_crew(coordinator.llm, agents, max_depth=2).compile(store=str(db_path))
    result = app.run_sync({"task": "6 * 7?"})
    assert result.state.status == "done"
    for model in (lead, calc, coordinator):
        model.broken = True
    assert assert_replays(app, result.run_id).identical
