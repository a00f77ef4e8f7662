"""Issue 7 item 4: the ReAct agent and the crews take a `memory=MemorySpec(...)`; they recall
before reasoning and remember observations and answers.

Memories are shared by the runs of a namespace (same database), recalled into the system
prompt as a `Relevant memories:` block (never the run's own entries), written with the node
that produced them (a crash never duplicates one), and read through the journal (replay needs
neither the models nor the memory)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstate import _crashpoints
from flowstate.checkpoints import SQLiteStore
from flowstate.checkpoints._postgres import PostgresStore
from flowstate.graphs import MemorySpec, react_agent
from flowstate.graphs._crews import (
    agent_from_graph,
    agent_from_llm,
    coordinator_crew,
    debate_crew,
    pipeline_crew,
)
from flowstate.llm import LLMRequest, ScriptedLLM, ToolResultBlock
from flowstate.testing import SimulatedCrash, assert_replays
from tests.store.conftest import drop_pg_schema, pg_schema, require_postgres

from .conftest import RaisingLLM, ToolCalls, make_tools, resumable
from .test_crews_scripts import (
    Model,
    coordinator_world,
    debater,
    orchestrator_world,
    specialist,
    synthesiser,
)

Where = Callable[[], Any]
"""Opens the test's checkpoint store: an SQLite path, or a ``PostgresStore`` on the test's
schema (the memories live in the same database either way)."""


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Where]:
    if request.param == "sqlite":
        path = str(tmp_path / "m.db")
        yield lambda: path
        return
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "graphs")
    try:
        yield lambda: PostgresStore(dsn, schema=schema)
    finally:
        drop_pg_schema(schema)


HEADING = "Relevant memories:"
GEO = MemorySpec(namespace="agent:geo")
LYON = "How many people live in Lyon?"
LYON_AGAIN = "Remind me: how many people live in Lyon?"


def city_script(req: LLMRequest) -> Any:
    """Look the city of the task up, then answer with what the tool returned."""
    city = "Nantes" if "Nantes" in req.messages[0].text else "Lyon"
    if len(req.messages) == 1:
        call = {"name": "population", "input": {"city": city}, "id": "t1"}
        return {"text": "Let me look it up.", "tool_calls": [call]}
    (result,) = [b for b in req.messages[-1].blocks if isinstance(b, ToolResultBlock)]
    return f"{city} has {result.content} inhabitants."


def agent(db: Where, memory: MemorySpec | None = GEO, llm: Any = None, tools: Any = None) -> Any:
    builder = react_agent(
        llm or ScriptedLLM(city_script), tools or make_tools(ToolCalls()), memory=memory
    )
    return builder.compile(store=db())


def entries(app: Any, spec: MemorySpec) -> list[Any]:
    store = app.memory_store()
    if spec.kind == "composite":
        return store.composite(spec.namespace).inspect()
    return store.memory(spec.kind, spec.namespace).inspect()


def systems(llm: ScriptedLLM) -> list[str]:
    return [r.system or "" for r in llm.requests]


def block(system: str) -> str:
    return system.split(HEADING, 1)[1] if HEADING in system else ""


# -- the ReAct agent ---------------------------------------------------------------------------


def test_react_remembers_its_observations_and_answer(where: Where) -> None:
    llm = ScriptedLLM(city_script)
    app = agent(where, llm=llm)

    result = app.run_sync({"task": LYON}, run_id="r1")

    assert result.state.answer == "Lyon has 522250 inhabitants."
    stored = {e.metadata["source"]: e for e in entries(app, GEO)}
    assert set(stored) == {"observation", "answer"}
    assert stored["observation"].content == (
        f'Task: {LYON}\nObservation from population({{"city": "Lyon"}}): 522250'
    )
    assert stored["observation"].metadata["tool"] == "population"
    assert stored["answer"].content == f"Task: {LYON}\nAnswer: Lyon has 522250 inhabitants."
    assert stored["answer"].importance > stored["observation"].importance
    assert {e.metadata["run_id"] for e in stored.values()} == {"r1"}
    # nothing to recall on the first run: its own observation is never shown back to it
    assert [HEADING in s for s in systems(llm)] == [False, False]
    assert [e.name for e in app.store.effects("r1")] == [
        "memory.retrieve:episodic:agent:geo",
        "llm.complete",
        "tool:population",
        "memory.retrieve:episodic:agent:geo",
        "llm.complete",
    ]


def test_a_second_run_recalls_the_first_ones_answer(where: Where) -> None:
    db = where
    agent(db).run_sync({"task": LYON}, run_id="r1")
    llm = ScriptedLLM(city_script)
    app = agent(db, llm=llm)

    app.run_sync({"task": LYON_AGAIN}, run_id="r2")

    first, second = systems(llm)
    assert first.startswith(HEADING)  # no system prompt of its own: the block is all of it
    assert "Answer: Lyon has 522250 inhabitants." in block(first)
    assert f"Task: {LYON}" in block(first)
    assert block(first).count("\n- ") == 2  # r1's observation and answer
    # the second turn still recalls r1's memories, never r2's own observation
    assert "Answer: Lyon has 522250 inhabitants." in block(second)
    assert f"Task: {LYON_AGAIN}" not in second
    assert len(entries(app, GEO)) == 4


def test_recall_is_bounded_by_k_and_appended_to_the_system_prompt(where: Where) -> None:
    db = where
    for i, task in enumerate([LYON, "How many people live in Nantes?"]):
        agent(db).run_sync({"task": task}, run_id=f"seed{i}")
    llm = ScriptedLLM(city_script)
    spec = MemorySpec(namespace="agent:geo", k=1)
    app = react_agent(llm, make_tools(), memory=spec, system="Be exact.").compile(store=db())

    app.run_sync({"task": LYON_AGAIN})

    first = systems(llm)[0]
    assert first.startswith(f"Be exact.\n\n{HEADING}\n- Task: ")
    assert block(first).count("\n- ") == 1


def test_without_memory_nothing_is_read_or_written(where: Where) -> None:
    llm = ScriptedLLM(city_script)
    app = agent(where, memory=None, llm=llm)

    app.run_sync({"task": LYON}, run_id="r")

    assert [e.name for e in app.store.effects("r")] == [
        "llm.complete",
        "tool:population",
        "llm.complete",
    ]
    assert systems(llm) == ["", ""]
    assert entries(app, GEO) == []


@pytest.mark.parametrize("kind", ["semantic", "composite", "working"])
def test_every_kind_of_memory_is_recalled_by_the_next_run(where: Where, kind: str) -> None:
    db = where
    spec = MemorySpec(namespace="agent:geo", kind=kind)  # type: ignore[arg-type]
    agent(db, spec).run_sync({"task": LYON})
    agent(db, spec).run_sync({"task": LYON})  # the same facts again
    llm = ScriptedLLM(city_script)
    app = agent(db, spec, llm=llm)

    app.run_sync({"task": LYON_AGAIN})

    assert "Answer: Lyon has 522250 inhabitants." in block(systems(llm)[0])
    stored = entries(app, spec)
    # semantic facts live under a key per distinct text: the repeated facts are one entry each
    assert len(stored) == (4 if kind == "semantic" else 6)


@pytest.mark.parametrize(
    ("remember", "sources"),
    [
        ("answers", ["answer"]),
        ("observations", ["observation"]),
        ("both", ["answer", "observation"]),
    ],
)
def test_remember_chooses_what_is_stored(where: Where, remember: str, sources: list[str]) -> None:
    spec = MemorySpec(namespace="agent:geo", remember=remember)  # type: ignore[arg-type]
    app = agent(where, spec)
    app.run_sync({"task": LYON})
    assert sorted(e.metadata["source"] for e in entries(app, spec)) == sources


def test_k_zero_remembers_without_recalling(where: Where) -> None:
    spec = MemorySpec(namespace="agent:geo", k=0)
    app = agent(where, spec)
    app.run_sync({"task": LYON}, run_id="r")
    assert not any(e.name.startswith("memory.") for e in app.store.effects("r"))
    assert len(entries(app, spec)) == 2


def test_the_spec_is_checked() -> None:
    with pytest.raises(ValueError):
        MemorySpec(namespace="")
    with pytest.raises(ValueError):
        MemorySpec(namespace="x", kind="reflection")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        react_agent(ScriptedLLM([]), memory="agent:geo")  # type: ignore[arg-type]
    # a plain dict is validated into a spec
    react_agent(ScriptedLLM([]), memory={"namespace": "x", "k": 2})  # type: ignore[arg-type]


# -- crews -------------------------------------------------------------------------------------

CREW = MemorySpec(namespace="crew:city")


def test_orchestrator_crew_remembers_and_recalls(where: Where) -> None:
    db = where
    first = orchestrator_world(memory=CREW)
    app = first.compile(store=db())
    r1 = app.run_sync(first.input, run_id="c1")
    assert r1.state.status == "done"
    stored = entries(app, CREW)
    assert sorted((e.metadata["source"], e.metadata.get("agent")) for e in stored) == [
        ("answer", None),
        ("observation", "researcher"),
        ("observation", "writer"),
    ]
    # nothing from an earlier run to recall: no block anywhere in the first run
    assert not any(HEADING in s for m in first.models.values() for s in systems(m.llm))

    second = orchestrator_world(memory=CREW)
    second.compile(store=db()).run_sync(second.input, run_id="c2")

    remembered = f"Answer: {r1.state.answer}"
    for role in ("orchestrator", "researcher", "writer", "synthesiser"):
        (system,) = systems(second.models[role].llm)
        assert system.index(HEADING) > 0, role  # after the role's own system prompt
        assert remembered in block(system), role
    assert len(entries(app, CREW)) == 6


def test_coordinator_crew_remembers_and_recalls(where: Where) -> None:
    db = where
    first = coordinator_world(memory=CREW)
    app = first.compile(store=db())
    r1 = app.run_sync(first.input, run_id="c1")
    assert r1.state.status == "done"
    stored = entries(app, CREW)
    assert sorted((e.metadata["source"], e.metadata.get("agent")) for e in stored) == [
        ("answer", None),
        ("observation", "researcher"),
        ("observation", "writer"),
    ]
    # the coordinator's later turns do not get its own run's results back as memories
    assert not any(HEADING in s for s in systems(first.models["coordinator"].llm))

    second = coordinator_world(memory=CREW)
    r2 = second.compile(store=db()).run_sync(second.input, run_id="c2")

    assert r2.state.answer == r1.state.answer  # the roster parsing still works
    coordinator = systems(second.models["coordinator"].llm)
    assert len(coordinator) == 3
    for system in coordinator:
        assert f"Answer: {r1.state.answer}" in block(system)
    assert HEADING in systems(second.models["researcher"].llm)[0]
    assert len(entries(app, CREW)) == 6


def test_a_graph_agents_result_is_remembered_and_not_recalled_by_its_own_crew(
    where: Where,
) -> None:
    geo = react_agent(ScriptedLLM(city_script), make_tools())  # no memory of its own

    def coordinate(req: LLMRequest) -> str:
        if "geo → you:" in req.messages[0].text:
            return "ANSWER: done"
        return f"DELEGATE geo: {LYON}"

    coordinator = ScriptedLLM(coordinate)
    crew = coordinator_crew(
        coordinator, [agent_from_graph("geo", geo, "knows cities")], memory=CREW
    )
    app = crew.compile(store=where())
    app.run_sync({"task": "Lyon?"}, run_id="c")

    stored = {e.metadata["source"]: e for e in entries(app, CREW)}
    assert stored["observation"].content.endswith("geo answered: Lyon has 522250 inhabitants.")
    assert stored["observation"].metadata["run_id"].startswith("c/")  # the agent's child run
    assert stored["answer"].content == "Task: Lyon?\nAnswer: done"
    # the coordinator's second turn does not recall what its own subgraph just wrote
    assert len(coordinator.requests) == 2
    assert not any(HEADING in s for s in systems(coordinator))


def test_pipeline_crew_stores_the_last_stage_once(where: Where) -> None:
    models = {n: Model(n, specialist(n)) for n in ("researcher", "writer")}
    stages = [agent_from_llm(n, m.llm, f"You are the {n}.") for n, m in models.items()]
    app = pipeline_crew(stages, memory=CREW).compile(store=where())

    result = app.run_sync({"task": "Lyon"})

    stored = entries(app, CREW)
    assert sorted((e.metadata["source"], e.metadata.get("agent")) for e in stored) == [
        ("answer", None),
        ("observation", "researcher"),
    ]
    assert stored[-1].content == f"Task: Lyon\nAnswer: {result.state.answer}"


def test_debate_crew_stores_the_last_round_and_the_synthesis(where: Where) -> None:
    debaters = Model("debaters", debater)
    builder = debate_crew(
        debaters.llm,
        n_agents=2,
        rounds=1,
        synthesiser=Model("synth", synthesiser).llm,
        memory=CREW,
    )
    app = builder.compile(store=where())

    app.run_sync({"task": "What is 6 * 7?"}, run_id="d1")
    assert not any(HEADING in s for s in systems(debaters.llm))
    app.run_sync({"task": "What is 6 * 7?"}, run_id="d2")

    first = [e for e in entries(app, CREW) if e.metadata["run_id"] == "d1"]
    assert sorted((e.metadata["source"], e.metadata.get("agent")) for e in first) == [
        ("answer", None),
        ("observation", "debater_1"),
        ("observation", "debater_2"),
    ]
    assert all(" r1: " in e.content for e in first if e.metadata["source"] == "observation")
    # every call of the second debate recalled the first one
    assert all(HEADING in s for s in systems(debaters.llm)[4:])


# -- durability --------------------------------------------------------------------------------


def crash_everywhere(
    build: Any, input: dict[str, Any], spec: MemorySpec, fresh: Callable[[str], Where]
) -> int:
    """Crash run "r" at every crash point (after a completed run "seed" of the same namespace
    in the same database), resume it, and check the resumed state and the memory against an
    uninterrupted run: no memory entry lost, none written twice. Returns the points tried.
    ``fresh(name)`` gives the opener of a new, empty database (SQLite file or Postgres schema)."""

    def drive(app: Any, resume: bool) -> Any:
        return asyncio.run(app.resume("r") if resume else app.run(input, run_id="r"))

    def seeded(db: Where) -> Where:
        build().compile(store=db()).run_sync(input, run_id="seed")
        return db

    def memory(app: Any) -> list[tuple[str, str, str]]:
        return sorted(
            (e.content, e.metadata["source"], e.metadata["run_id"]) for e in entries(app, spec)
        )

    def opened(db: Where) -> Any:
        store = db()
        return SQLiteStore(store) if isinstance(store, str) else store

    def die(store: Any) -> None:  # drop the connection without any cleanup, as a dead process
        if isinstance(store, SQLiteStore):
            store.conn.close()
        else:
            store.close()

    gold_app = build().compile(store=seeded(fresh("golden"))())
    golden = drive(gold_app, False)
    gold = memory(gold_app)
    assert {run.split("/")[0] for _, _, run in gold} == {"seed", "r"}
    for k in range(1, 500):
        db = seeded(fresh(f"k{k}"))
        count = 0

        def hook(name: str, k: int = k) -> None:
            nonlocal count
            count += 1
            if count >= k:
                raise SimulatedCrash(name)

        store = opened(db)
        _crashpoints.set_hook(hook)
        try:
            drive(build().compile(store=store), False)
        except SimulatedCrash:
            pass
        else:
            return k - 1
        finally:
            _crashpoints.set_hook(None)
            die(store)
        probe = opened(db)
        has_run = probe.find_run("r") is not None
        probe.close()
        app = build().compile(store=db())
        result = drive(app, bool(has_run))
        assert (result.status, result.state) == (golden.status, golden.state), f"point {k}"
        assert memory(app) == gold, f"crash point {k}: the memory differs after resume"
    raise AssertionError("the run still crashed after 500 crash points")


def sqlite_dbs(tmp: Path) -> Callable[[str], Where]:
    return lambda name: lambda path=str(tmp / f"{name}.db"): path


def test_react_with_memory_resumes_at_every_crash_point_without_duplicate_writes(
    fast_tmp: Path,
) -> None:
    def build() -> Any:
        return react_agent(ScriptedLLM(city_script), make_tools(), memory=GEO)

    assert crash_everywhere(build, {"task": LYON}, GEO, sqlite_dbs(fast_tmp)) > 10


@pytest.mark.slow  # a Postgres schema per crash point: ~70 s on the shared 2-core machine
def test_react_with_memory_on_postgres_resumes_at_every_crash_point_once(tmp_path: Path) -> None:
    """The same on Postgres: the memories commit in the activation's transaction there too."""
    dsn = require_postgres()
    schemas: list[str] = []

    def fresh(name: str) -> Where:
        schemas.append(pg_schema(tmp_path, name))
        return lambda schema=schemas[-1]: PostgresStore(dsn, schema=schema)

    def build() -> Any:
        return react_agent(ScriptedLLM(city_script), make_tools(), memory=GEO)

    try:
        assert crash_everywhere(build, {"task": LYON}, GEO, fresh) > 10
    finally:
        for schema in schemas:
            drop_pg_schema(schema)


def test_coordinator_with_memory_resumes_at_every_crash_point_without_duplicate_writes(
    fast_tmp: Path,
) -> None:
    def build() -> Any:
        return coordinator_world(memory=CREW).builder

    task = {"task": "Write a note on Lyon."}
    assert crash_everywhere(build, task, CREW, sqlite_dbs(fast_tmp)) > 10


def test_assert_resumable_holds_with_memory(fast_tmp: Path) -> None:
    report = resumable(agent(lambda: ":memory:"), {"task": LYON})
    assert report.crash_points > 10
    crew = orchestrator_world(memory=CREW)
    assert resumable(crew.compile(), crew.input).crash_points > 10


def test_replay_needs_neither_the_models_nor_the_memory(where: Where) -> None:
    db = where
    agent(db).run_sync({"task": LYON}, run_id="r1")
    agent(db).run_sync({"task": LYON_AGAIN}, run_id="r2")
    first = coordinator_world(memory=CREW)
    first.compile(store=db()).run_sync(first.input, run_id="c1")
    second = coordinator_world(memory=CREW)
    second.compile(store=db()).run_sync(second.input, run_id="c2")
    assert HEADING in systems(second.models["coordinator"].llm)[0]

    offline = agent(db, llm=RaisingLLM(), tools=make_tools(broken=True))
    second.break_all()
    crew = second.compile(store=db())
    # wipe the memories: the reads come from the journal
    offline.memory_store().memory("episodic", GEO.namespace).clear()
    offline.memory_store().memory("episodic", CREW.namespace).clear()
    assert entries(offline, GEO) == entries(crew, CREW) == []

    assert assert_replays(offline, "r2").identical
    assert assert_replays(crew, "c2").identical
    assert entries(offline, GEO) == entries(crew, CREW) == []  # replay writes nothing
