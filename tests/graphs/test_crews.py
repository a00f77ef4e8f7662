"""The four crews on scripted models: normal paths, what they refuse and report, their limits,
and the parsers that read orchestrator and coordinator replies."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from flowstate import GraphBuildError
from flowstate.graphs._crews import (
    CrewMessage,
    Delegate,
    agent_from_graph,
    agent_from_llm,
    coordinator_crew,
    debate_crew,
    orchestrator_crew,
    parse_choices,
    parse_decision,
    pipeline_crew,
)
from flowstate.llm import LLMRequest, ToolUseBlock, conversation_problems
from tests.graphs.test_crews_scripts import (
    CalcState,
    Model,
    calculator_agent,
    calculator_graph,
    coordinator_world,
    debate_world,
    first_line,
    orchestrator_world,
    pipeline_world,
    specialists,
)


def kinds(log: list[CrewMessage]) -> list[tuple[str, str, str]]:
    return [(m.type, m.sender, m.recipient) for m in log]


def nodes_by_step(app: Any, run_id: str) -> list[tuple[int, str]]:
    return [(h.step, h.node) for h in app.history(run_id) if h.depth == 0]


def all_requests(models: dict[str, Model]) -> list[LLMRequest]:
    return [r for m in models.values() for r in m.requests]


# -- orchestrator ------------------------------------------------------------------------------


def test_orchestrator_runs_chosen_specialists_in_parallel_and_synthesises() -> None:
    crew = orchestrator_world()
    app = crew.compile()

    result = app.run_sync(crew.input)

    state = result.state
    assert (result.status, state.status) == ("completed", "done")
    assert state.answer == (
        "synthesis of [researcher] researcher on find the facts; "
        "[writer] writer on write the summary"
    )
    # one activation per chosen specialist, all in the same step; the critic was not chosen
    assert nodes_by_step(app, result.run_id) == [
        (0, "orchestrate"),
        (1, "researcher"),
        (1, "writer"),
        (2, "synthesise"),
    ]
    assert kinds(state.log) == [
        ("task", "user", "orchestrator"),
        ("task", "orchestrator", "researcher"),
        ("task", "orchestrator", "writer"),
        ("answer", "researcher", "orchestrator"),
        ("answer", "writer", "orchestrator"),
        ("synthesis", "synthesiser", "user"),
    ]
    assert [a.agent for a in state.assignments] == ["researcher", "writer"]
    # each specialist got its own subtask, with the request as context
    (req,) = crew.models["researcher"].requests
    assert req.messages[0].text == (
        "find the facts\n\n(This is part of the request: How many people live in Lyon?)"
    )
    assert req.system == "You are the researcher."
    assert crew.calls() == {
        "researcher": 1,
        "writer": 1,
        "critic": 0,
        "orchestrator": 1,
        "synthesiser": 1,
    }
    # the orchestrator saw every specialist with its description
    system = crew.models["orchestrator"].requests[0].system or ""
    for name in ("researcher", "writer", "critic"):
        assert f"- {name}: the {name} of the crew" in system


def test_unknown_specialists_are_dropped_and_reported_never_silently() -> None:
    crew = orchestrator_world(
        "- **Researcher**: find the facts\nastrologer: read the stars\nwriter: summarise"
    )
    app = crew.compile()

    result = app.run_sync(crew.input)

    state = result.state
    assert state.status == "done"
    critiques = [m for m in state.log if m.type == "critique"]
    assert len(critiques) == 1
    assert critiques[0].metadata == {"unknown": ["astrologer"]}
    assert "astrologer" in critiques[0].content
    assert [a.agent for a in state.assignments] == ["researcher", "writer"]
    assert "astrologer" not in {n for _, n in nodes_by_step(app, result.run_id)}


def test_only_unknown_specialists_ends_with_no_specialist_not_a_fake_answer() -> None:
    crew = orchestrator_world("astrologer: read the stars")
    app = crew.compile()

    result = app.run_sync(crew.input)

    state = result.state
    assert result.status == "completed"
    assert (state.status, state.answer) == ("no_specialist", "")
    # asked twice (one correction); both answers reported; nobody ran, nothing synthesised
    assert crew.calls()["orchestrator"] == 2
    second = crew.models["orchestrator"].requests[1]
    assert "named only unknown specialists (astrologer)" in second.messages[-1].text
    assert [m.metadata for m in state.log if m.type == "critique"] == [
        {"unknown": ["astrologer"]},
        {"unknown": ["astrologer"]},
        {"status": "no_specialist"},
    ]
    assert nodes_by_step(app, result.run_id) == [(0, "orchestrate")]
    assert crew.calls()["synthesiser"] == 0


def test_bad_orchestrator_output_is_corrected_once_then_a_clear_status() -> None:
    def prose_then_names(request: LLMRequest) -> str:
        if len(request.messages) == 1:
            return "I think this request is interesting."
        return "critic: check the number"

    crew = orchestrator_world(prose_then_names)
    result = crew.compile().run_sync(crew.input)
    assert result.state.status == "done"
    assert [a.agent for a in result.state.assignments] == ["critic"]

    stubborn = orchestrator_world("Sure.", max_retries=0)
    result = stubborn.compile().run_sync(stubborn.input)
    assert (result.state.status, result.state.answer) == ("bad_output", "")
    assert result.state.log[-1].type == "critique"
    assert "Sure." in result.state.log[-1].content


def test_orchestrator_prose_naming_specialists_still_works() -> None:
    crew = orchestrator_world("I would ask the Writer first, then the researcher.")
    result = crew.compile().run_sync(crew.input)
    assert [a.agent for a in result.state.assignments] == ["writer", "researcher"]
    assert all(a.task == crew.task for a in result.state.assignments)


# -- debate ------------------------------------------------------------------------------------


def test_debate_answers_independently_then_refines_for_bounded_rounds() -> None:
    crew = debate_world(n_agents=3, rounds=2)
    app = crew.compile()

    result = app.run_sync(crew.input)

    state = result.state
    assert state.status == "done"
    steps = nodes_by_step(app, result.run_id)
    debaters = ["debater_1", "debater_2", "debater_3"]
    assert steps == [
        (0, "open"),
        *[(1, d) for d in debaters],
        (2, "moderate"),
        *[(3, d) for d in debaters],
        (4, "moderate"),
        *[(5, d) for d in debaters],
        (6, "moderate"),
        (7, "synthesise"),
    ]
    answers = [m for m in state.log if m.type == "answer"]
    assert [(m.sender, m.metadata["round"]) for m in answers] == [
        (d, r) for r in range(3) for d in debaters
    ]
    # round 0 is independent; later rounds read the others' latest answers (not their own)
    assert answers[0].content == "debater_1 r0: 42"
    assert answers[3].content == "debater_1 r1: 42 (read debater_2, debater_3)"
    assert answers[8].content == "debater_3 r2: 42 (read debater_1, debater_2)"
    round2 = [r for r in crew.models["debaters"].requests if "Round 2 of 2" in r.messages[0].text]
    assert len(round2) == 3
    d1 = next(r for r in round2 if (r.system or "").startswith("You are debater_1,"))
    assert "Your previous answer:\ndebater_1 r1: 42 (read debater_2, debater_3)" in (
        d1.messages[0].text
    )
    assert "[debater_2]\ndebater_2 r1: 42 (read debater_1, debater_3)" in d1.messages[0].text
    # the synthesis reads the final round only
    assert state.answer.startswith("synthesis of [debater_1] debater_1 r2: 42")
    assert state.answer.count("[debater_") == 3
    assert crew.calls() == {"debaters": 9, "synthesiser": 1}


def test_debate_with_no_rounds_and_with_given_agents() -> None:
    crew = debate_world(n_agents=2, rounds=0)
    app = crew.compile()
    result = app.run_sync(crew.input)
    assert [n for _, n in nodes_by_step(app, result.run_id)] == [
        "open",
        "debater_1",
        "debater_2",
        "moderate",
        "synthesise",
    ]

    agents, models = specialists("optimist", "pessimist")
    app = debate_crew(agents, rounds=1).compile(store=":memory:")
    result = app.run_sync({"task": "Will it rain?"})
    assert result.state.status == "done"
    # without a synthesiser, the first model agent's model synthesises
    assert result.state.answer == "optimist on Request: Will it rain?"
    assert [m.metadata["round"] for m in result.state.log if m.type == "answer"] == [0, 0, 1, 1]
    assert len(models["optimist"].requests) == 3


# -- pipeline ----------------------------------------------------------------------------------


def test_pipeline_feeds_each_stage_the_previous_output() -> None:
    crew = pipeline_world()
    app = crew.compile()

    result = app.run_sync(crew.input)

    state = result.state
    assert (state.status, state.answer) == ("done", "editor on writer on researcher on Lyon")
    assert nodes_by_step(app, result.run_id) == [
        (0, "begin"),
        (1, "researcher"),
        (2, "writer"),
        (3, "editor"),
        (4, "finish"),
    ]
    assert kinds(state.log) == [
        ("task", "user", "researcher"),
        ("answer", "researcher", "writer"),
        ("answer", "writer", "editor"),
        ("answer", "editor", "user"),
    ]
    (editor,) = crew.models["editor"].requests
    assert editor.messages[0].text == (
        "writer on researcher on Lyon\n\n(Stage 3 of 3. The original request: Lyon)"
    )


def test_pipeline_stops_at_an_empty_stage() -> None:
    crew = pipeline_world()
    crew.models["writer"].respond = lambda request: ""
    app = crew.compile()

    result = app.run_sync(crew.input)

    assert (result.state.status, result.state.answer) == ("bad_output", "")
    assert [n for _, n in nodes_by_step(app, result.run_id)] == [
        "begin",
        "researcher",
        "writer",
        "finish",
    ]
    assert result.state.log[-1].metadata == {"stage": 1}
    assert crew.calls()["editor"] == 0


# -- coordinator -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ("solo",),
        ("researcher", "writer"),
        ("writer", "researcher", "critic"),
        ("a1", "b-2", "c_3", "d4", "e5"),
    ],
)
def test_delegation_reaches_each_specialist(names: tuple[str, ...]) -> None:
    """M2: a scripted coordinator that delegates to each agent of its roster in turn reaches
    every one of them, each exactly once, with its own typed task, and the results come back."""
    crew = coordinator_world(names)
    app = crew.compile()

    result = app.run_sync(crew.input)

    state = result.state
    assert state.status == "done"
    expected = ["coordinator"]
    for name in names:
        expected += [name, "coordinator"]
    assert [n for _, n in nodes_by_step(app, result.run_id)] == expected
    for name in names:
        (req,) = crew.models[name].requests
        assert req.messages[0].text == (
            f"Task from coordinator: part of the task for {name}\n\n"
            "Context from coordinator: be brief"
        )
    delegated = [m for m in state.log if m.type == "delegate"]
    assert [m.recipient for m in delegated] == list(names)
    assert [m.metadata["delegation"] for m in delegated] == [
        f"d{i}" for i in range(1, len(names) + 1)
    ]
    results = [m for m in state.log if m.type == "result"]
    assert [(m.sender, m.recipient) for m in results] == [(n, "coordinator") for n in names]
    assert state.answer == "; ".join(
        f"{n} on Task from coordinator: part of the task for {n}" for n in names
    )
    assert (state.delegations, state.stack) == (len(names), [])


def test_handoffs_keep_every_conversation_valid_and_use_no_tool_calls() -> None:
    """M1: a handoff is a typed record, so no model ever sees a tool_use without its result."""
    crew = coordinator_world(("researcher", "writer", "critic"))
    crew.compile().run_sync(crew.input)
    requests = all_requests(crew.models)
    assert len(requests) == 7
    for req in requests:
        assert conversation_problems(req.messages) == []
        assert req.tools == []
        assert not any(isinstance(b, ToolUseBlock) for m in req.messages for b in m.blocks)


def test_delegation_limit_ends_the_run_with_status_limit() -> None:
    def always_delegate(request: LLMRequest) -> str:
        return "DELEGATE researcher: look again"

    crew = coordinator_world(coordinator=always_delegate, max_delegations=3)
    app = crew.compile()

    result = app.run_sync(crew.input)

    state = result.state
    assert result.status == "completed"
    assert (state.status, state.answer, state.delegations) == ("limit", "", 3)
    assert crew.calls()["researcher"] == 3
    assert crew.calls()["coordinator"] == 4
    last = state.log[-1]
    assert last.type == "critique"
    assert last.metadata["limit"] == "max_delegations"
    assert last.metadata["refused"] == {
        "target": "researcher",
        "task": "look again",
        "context": "",
    }
    # the coordinator was told its budget, and to answer once it was spent
    final_prompt = crew.models["coordinator"].requests[-1].messages[0].text
    assert "Delegations used: 3 of 3. No delegations are left" in final_prompt


def test_per_agent_max_visits_refuses_more_tasks() -> None:
    def insist(request: LLMRequest) -> str:
        return "DELEGATE writer: write it again"

    crew = coordinator_world(coordinator=insist, max_visits=2)
    result = crew.compile().run_sync(crew.input)

    state = result.state
    assert (state.status, state.answer) == ("limit", "")
    assert crew.calls()["writer"] == 2
    assert [m.metadata for m in state.log if m.type == "critique"] == [
        {"exhausted": ["writer"]},
        {"exhausted": ["writer"]},
        {"status": "limit"},
    ]

    def then_answer(request: LLMRequest) -> str:
        if "writer → you" in request.messages[0].text and len(request.messages) > 1:
            return "ANSWER: enough"
        return "DELEGATE writer: write it"

    _, models = specialists("writer")
    limited = [agent_from_llm("writer", models["writer"].llm, "You are the writer.", max_visits=1)]
    app = coordinator_crew(Model("c", then_answer).llm, limited).compile(store=":memory:")
    result = app.run_sync({"task": "x"})
    assert (result.state.status, result.state.answer) == ("done", "enough")
    assert len(models["writer"].requests) == 1


def test_unknown_or_self_delegation_is_reported_and_corrected() -> None:
    """CrewAI #4783: a manager that "delegates" to itself, or to a name it made up."""

    def confused(request: LLMRequest) -> str:
        turn = len(request.messages)
        if "researcher → you" in request.messages[0].text:
            return "ANSWER: done"
        if turn == 1:
            return "DELEGATE coordinator: do it yourself"
        if turn == 3:
            return "DELEGATE Astrologer: read the stars"
        return "DELEGATE Researcher: find the facts"

    crew = coordinator_world(coordinator=confused, max_retries=2)
    result = crew.compile().run_sync(crew.input)

    state = result.state
    assert (state.status, state.answer) == ("done", "done")
    assert [m.metadata for m in state.log if m.type == "critique"] == [
        {"refused": ["coordinator"]},
        {"unknown": ["Astrologer"]},
    ]
    corrections = crew.models["coordinator"].requests[2].messages
    assert "'Astrologer' is not an agent of this crew" in corrections[-1].text
    assert [m.recipient for m in state.log if m.type == "delegate"] == ["researcher"]


def test_coordinator_without_a_decision_is_corrected_then_bad_output() -> None:
    def chatty(request: LLMRequest) -> str:
        return "Let me think about who should do this."

    crew = coordinator_world(coordinator=chatty)
    result = crew.compile().run_sync(crew.input)
    assert (result.state.status, result.state.answer) == ("bad_output", "")
    assert crew.calls()["coordinator"] == 2
    assert [m.metadata for m in result.state.log if m.type == "critique"] == [
        {"invalid": "it has neither a DELEGATE line nor an ANSWER line"},
        {"invalid": "it has neither a DELEGATE line nor an ANSWER line"},
        {"status": "bad_output"},
    ]


def test_one_delegation_per_turn_and_the_rest_is_reported() -> None:
    def greedy(request: LLMRequest) -> str:
        if "writer → you" in request.messages[0].text:
            return "ANSWER: ok"
        if "researcher → you" in request.messages[0].text:
            return "DELEGATE writer: write"
        return "DELEGATE researcher: research\nDELEGATE writer: write"

    crew = coordinator_world(coordinator=greedy)
    state = crew.compile().run_sync(crew.input).state
    assert state.status == "done"
    assert [m.metadata for m in state.log if m.type == "critique"] == [{"dropped": ["writer"]}]
    assert [m.recipient for m in state.log if m.type == "delegate"] == ["researcher", "writer"]


def lead_script(request: LLMRequest) -> str:
    """A lead that hands the sums to the calculator, then reports its result."""
    prompt = request.messages[0].text
    found = re.search(r"calculator → you: (.*)", prompt)
    if found:
        return f"ANSWER: the lead reports {found.group(1)}"
    return "DELEGATE calculator: 6 * 7"


def test_nested_delegation_is_bounded_by_max_depth() -> None:
    calc_model = Model("calc", lambda request: "42")
    lead = Model("lead", lead_script)
    coordinator = Model(
        "coordinator",
        lambda request: (
            "ANSWER: " + first_line(request.messages[0].text.split("lead → you: ")[1])
            if "lead → you" in request.messages[0].text
            else "DELEGATE lead: get the number"
        ),
    )
    agents = [
        agent_from_llm("lead", lead.llm, "You lead.", "leads"),
        calculator_agent(calc_model),
    ]
    app = coordinator_crew(coordinator.llm, agents, max_depth=2).compile(store=":memory:")

    result = app.run_sync({"task": "What is 6 * 7?"})

    state = result.state
    assert (state.status, state.answer) == ("done", "the lead reports checked: 42")
    assert [n for _, n in nodes_by_step(app, result.run_id)] == [
        "coordinator",
        "lead",
        "calculator",
        "lead",
        "coordinator",
    ]
    delegates = [m for m in state.log if m.type == "delegate"]
    assert [
        (m.sender, m.recipient, m.metadata["depth"], m.metadata["parent"]) for m in delegates
    ] == [
        ("coordinator", "lead", 1, None),
        ("lead", "calculator", 2, "d1"),
    ]
    # the lead was offered delegation (but not to itself or the coordinator)
    system = lead.requests[0].system or ""
    assert "- calculator: does arithmetic exactly" in system
    assert "- lead:" not in system

    # with the default max_depth=1 the lead may not delegate: its reply is its answer
    lead.requests.clear()
    app = coordinator_crew(coordinator.llm, agents).compile(store=":memory:")
    state = app.run_sync({"task": "What is 6 * 7?"}).state
    assert state.answer == "DELEGATE calculator: 6 * 7"
    assert lead.requests[0].system == "You lead."


def test_delegation_back_up_the_chain_is_refused() -> None:
    def loop_back(request: LLMRequest) -> str:
        if len(request.messages) == 1:
            return "DELEGATE lead: and back to you"
        return "ANSWER: fine, I did it"

    lead = Model(
        "lead",
        lambda r: (
            "DELEGATE worker: do it"
            if "worker →" not in r.messages[0].text
            else "ANSWER: lead done"
        ),
    )
    worker = Model("worker", loop_back)
    coordinator = Model(
        "coordinator",
        lambda r: "ANSWER: ok" if "lead →" in r.messages[0].text else "DELEGATE lead: go",
    )
    agents = [
        agent_from_llm("lead", lead.llm, "You lead."),
        agent_from_llm("worker", worker.llm, "You work."),
    ]
    app = coordinator_crew(coordinator.llm, agents, max_depth=3).compile(store=":memory:")
    state = app.run_sync({"task": "t"}).state
    assert state.status == "done"
    assert [m.metadata for m in state.log if m.type == "critique"] == [{"refused": ["lead"]}]
    assert [m.content for m in state.log if m.type == "result"] == ["fine, I did it", "lead done"]


def test_coordinator_graph_declares_every_delegation_edge() -> None:
    crew = coordinator_world(("researcher", "writer"))
    app = crew.compile()
    assert set(app.ir.nodes["coordinator"].goto) == {"researcher", "writer", "__end__"}
    assert set(app.ir.nodes["researcher"].goto) == {"coordinator", "__end__"}
    assert app.ir.nodes["coordinator"].max_visits == 9
    diagram = app.to_mermaid()
    assert 'n_coordinator -. "goto" .-> n_researcher' in diagram


# -- graph agents ------------------------------------------------------------------------------


def test_a_graph_agent_works_in_every_crew() -> None:
    calc = Model("calc", lambda request: "42")
    agent = calculator_agent(calc)
    agents, _ = specialists("writer")

    orchestrator = Model("o", lambda r: "calculator: 6 * 7\nwriter: say it")
    app = orchestrator_crew(orchestrator.llm, [agent, *agents]).compile(store=":memory:")
    result = app.run_sync({"task": "6 * 7?"})
    answers = {m.sender: m.content for m in result.state.log if m.type == "answer"}
    assert answers["calculator"] == "checked: 42"
    # the child run is checkpointed in the same store and shows in the history
    nested = [(h.node, h.depth) for h in app.history(result.run_id) if h.depth > 0]
    assert nested == [("prepare", 1), ("calculator", 1), ("think", 2), ("check", 2), ("report", 1)]
    assert calc.requests[0].messages[0].text == ("6 * 7\n\n(This is part of the request: 6 * 7?)")

    app = pipeline_crew([agent, *agents]).compile(store=":memory:")
    result = app.run_sync({"task": "6 * 7"})
    assert result.state.answer == "writer on checked: 42"

    app = debate_crew([agent, *agents], rounds=1).compile(store=":memory:")
    result = app.run_sync({"task": "6 * 7"})
    assert [m.sender for m in result.state.log if m.type == "answer"] == [
        "calculator",
        "writer",
        "calculator",
        "writer",
    ]

    coordinator = Model(
        "c",
        lambda r: (
            "ANSWER: got it" if "calculator →" in r.messages[0].text else "DELEGATE calculator: 6*7"
        ),
    )
    app = coordinator_crew(coordinator.llm, [agent]).compile(store=":memory:")
    state = app.run_sync({"task": "6 * 7"}).state
    assert [m.content for m in state.log if m.type == "result"] == ["checked: 42"]
    assert state.log[-2].metadata == {"delegation": "d1", "parent": None}


def test_agent_from_graph_checks_the_field_convention() -> None:
    calc = Model("calc", lambda request: "42")
    with pytest.raises(GraphBuildError) as err:
        agent_from_graph(
            "calc", calculator_graph(calc), input_field="question", output_field="result"
        )
    text = str(err.value)
    assert "has no field 'question' (input_field)" in text
    assert "has no field 'result' (output_field)" in text
    assert "requires ['task']" in text
    assert isinstance(CalcState(task="x"), CalcState)


# -- building ----------------------------------------------------------------------------------


def test_crews_list_every_configuration_problem_at_once() -> None:
    agents, _ = specialists("writer", "Writer", "crew")
    llm = Model("m", lambda r: "x").llm
    with pytest.raises(GraphBuildError) as err:
        orchestrator_crew(llm, [*agents, "not an agent"], max_retries=-1)  # type: ignore[list-item]
    problems = err.value.problems
    assert len(problems) == 4
    assert "two specialists are named 'Writer'" in problems[0]
    assert "specialist name 'crew' is reserved" in problems[1]
    assert "'not an agent' is not an Agent" in problems[2]
    assert "max_retries" in problems[3]

    with pytest.raises(GraphBuildError, match="at least two debaters"):
        debate_crew(llm, n_agents=1)
    with pytest.raises(GraphBuildError, match="graph agent; a synthesiser must be a model"):
        debate_crew(llm, synthesiser=calculator_agent(Model("c", lambda r: "1")))
    with pytest.raises(GraphBuildError, match="no stages"):
        pipeline_crew([])
    with pytest.raises(GraphBuildError, match="max_delegations must be at least 1"):
        coordinator_crew(llm, agents[:1], max_delegations=0)
    with pytest.raises(GraphBuildError, match="not usable as a node name"):
        agent_from_llm("two words", llm, "s")


# -- parsing -----------------------------------------------------------------------------------


KNOWN = ["researcher", "data_analyst", "writer"]


@pytest.mark.parametrize(
    ("text", "chosen", "unknown"),
    [
        (
            "researcher: find it\nwriter: write it",
            [("researcher", "find it"), ("writer", "write it")],
            [],
        ),
        (
            "1. **Data Analyst**: crunch\n- `writer`",
            [("data_analyst", "crunch"), ("writer", "")],
            [],
        ),
        ("researcher: a\nresearcher: b", [("researcher", "a\nb")], []),
        ("oracle: predict\nwriter: w", [("writer", "w")], ["oracle"]),
        ("Here is my plan.\nThe writer should start.", [("writer", "")], []),
        ("No specialist fits.", [], []),
        ("", [], []),
    ],
)
def test_parse_choices(text: str, chosen: list[tuple[str, str]], unknown: list[str]) -> None:
    choices = parse_choices(text, KNOWN)
    assert (choices.chosen, choices.unknown) == (chosen, unknown)


@pytest.mark.parametrize(
    ("text", "strict", "kind", "expected"),
    [
        (
            "DELEGATE researcher: find it",
            True,
            "delegate",
            Delegate(target="researcher", task="find it"),
        ),
        (
            "Thinking...\n**DELEGATE** to `writer`: draft\nmore detail\nCONTEXT: Lyon\nhas 500k",
            True,
            "delegate",
            Delegate(target="writer", task="draft\nmore detail", context="Lyon\nhas 500k"),
        ),
        ("ANSWER: 42\nContext: none", True, "answer", "42\nContext: none"),
        ("Final answer: 42", True, "answer", "42"),
        ("42", True, "invalid", "neither a DELEGATE line nor an ANSWER line"),
        ("42", False, "answer", "42"),
        ("ANSWER:", False, "invalid", "ANSWER: line is empty"),
        ("Delegate this to the writer.", True, "invalid", "neither"),
    ],
)
def test_parse_decision(text: str, strict: bool, kind: str, expected: Any) -> None:
    decision = parse_decision(text, strict=strict)
    assert decision.kind == kind
    if kind == "delegate":
        assert decision.delegate == expected
    elif kind == "answer":
        assert decision.answer == expected
    else:
        assert expected in decision.problem


def test_parse_decision_reports_extra_delegations() -> None:
    decision = parse_decision("DELEGATE a: x\nDELEGATE b: y\nDELEGATE c: z", strict=True)
    assert decision.delegate == Delegate(target="a", task="x")
    assert decision.dropped == ["b", "c"]


def test_delegation_order_follows_the_coordinator_for_every_roster_order() -> None:
    """The scripted coordinator only reads its prompt, so any roster order works."""
    for names in itertools.permutations(("x", "y", "z")):
        crew = coordinator_world(names)
        state = crew.compile().run_sync(crew.input).state
        assert [m.recipient for m in state.log if m.type == "delegate"] == list(names)
