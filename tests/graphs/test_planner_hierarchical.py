"""`hierarchical_planner`: decomposition into subtasks, yes/no complexity questions, recursive
decomposition bounded by max_depth, leaves run in order; unreadable answers, a failing leaf,
crash-and-resume and offline replay."""

from __future__ import annotations

import re
from typing import Any

from flowstate.graphs import hierarchical_planner
from flowstate.llm import ScriptedLLM
from flowstate.testing import assert_replays

from .conftest import RaisingLLM, planner_script, resumable

GOAL = {"goal": "Write a city report"}

SUBTASKS = {
    "Write a city report": "1. Research the cities\n2. Draft the report\n3. Proofread",
    "Research the cities": "Subtasks:\n- Lyon facts\n- Nantes facts",
    "Draft the report": "1) Outline\n2) Write sections",
}


def task_of(prompt: str, label: str) -> str:
    m = re.search(rf"^{label}: (.+)$", prompt, re.MULTILINE)
    assert m is not None, prompt
    return m.group(1)


def tree_script(prompt: str) -> str:
    if "Is this subtask complex" in prompt:
        subtask = task_of(prompt, "Subtask")
        return "Yes, it has several parts." if subtask in SUBTASKS else "No."
    return SUBTASKS.get(task_of(prompt, "Task"), "1. Just do it")


async def echo(description: str, context: str) -> tuple[bool, str]:
    return True, f"<{description}>"


def test_decomposes_complex_subtasks_and_runs_the_leaves_in_order() -> None:
    llm = ScriptedLLM(planner_script(tree_script))
    app = hierarchical_planner(llm, echo).compile(store=":memory:")
    result = app.run_sync(GOAL)

    state = result.state
    assert [(n.path, n.description, n.depth, n.complex) for n in state.tree] == [
        ("1", "Research the cities", 1, True),
        ("2", "Draft the report", 1, True),
        ("3", "Proofread", 1, False),
        ("1.1", "Lyon facts", 2, False),
        ("1.2", "Nantes facts", 2, False),
        ("2.1", "Outline", 2, False),
        ("2.2", "Write sections", 2, False),
    ]
    assert [(s.id, s.description, s.depends_on) for s in state.plan.steps] == [
        (1, "Lyon facts", []),
        (2, "Nantes facts", [1]),
        (3, "Outline", [2]),
        (4, "Write sections", [3]),
        (5, "Proofread", [4]),
    ]
    assert (state.status, state.answer) == ("completed", "<Proofread>")
    prompts = [r.messages[0].text for r in llm.requests]
    # 1 decomposition + 3 questions at level 1, then 2 decompositions and no question at
    # level 2 (max_depth=2: subtasks there are leaves)
    assert sum("Break this task" in p for p in prompts) == 3
    assert sum("Is this subtask complex" in p for p in prompts) == 3
    level_two = [p for p in prompts if "Task: Draft the report" in p]
    assert len(level_two) == 1 and "Overall goal: Write a city report" in level_two[0]
    # the two complex subtasks were decomposed in parallel (one Send each, same step)
    top = [(h.step, h.task_path) for h in app.history(result.run_id) if h.depth == 0]
    assert (3, "decompose[0]") in top and (3, "decompose[1]") in top


def test_max_depth_one_asks_no_complexity_question() -> None:
    llm = ScriptedLLM(planner_script(tree_script))
    state = (
        hierarchical_planner(llm, echo, max_depth=1).compile(store=":memory:").run_sync(GOAL).state
    )
    assert [s.description for s in state.plan.steps] == [
        "Research the cities",
        "Draft the report",
        "Proofread",
    ]
    assert len(llm.requests) == 1


def test_unclear_answers_are_corrected_once_then_the_task_is_a_leaf() -> None:
    def script(prompt: str) -> str:
        if "Is this subtask complex" in prompt:
            return "Hard to say."  # unclear: not complex
        if "Task: Write a city report" in prompt:
            return "1. Research\n2. Write"
        return "I would rather not."

    llm = ScriptedLLM(planner_script(script))
    state = hierarchical_planner(llm, echo).compile(store=":memory:").run_sync(GOAL).state
    assert [s.description for s in state.plan.steps] == ["Research", "Write"]
    assert not any(n.complex for n in state.tree)

    stubborn = ScriptedLLM(planner_script(lambda p: "I would rather not."))
    state = hierarchical_planner(stubborn, echo).compile(store=":memory:").run_sync(GOAL).state
    assert [s.description for s in state.plan.steps] == ["Write a city report"]
    assert state.tree == []
    assert len(stubborn.requests) == 2  # the question and one correction
    assert stubborn.requests[1].messages[-1].text.startswith("I could not find a numbered list")


def test_a_failing_leaf_fails_the_run_and_leaves_the_rest_pending() -> None:
    async def lyon_is_missing(description: str, context: str) -> tuple[bool, str]:
        if description == "Nantes facts":
            return False, "no data about Nantes"
        return True, "ok"

    llm = ScriptedLLM(planner_script(tree_script))
    state = (
        hierarchical_planner(llm, lyon_is_missing).compile(store=":memory:").run_sync(GOAL).state
    )
    assert (state.status, state.answer) == ("failed", None)
    assert [s.status for s in state.plan.steps] == [
        "completed",
        "failed",
        "pending",
        "pending",
        "pending",
    ]
    assert state.error == "step 2 ('Nantes facts') failed: no data about Nantes"


def test_survives_a_crash_at_every_point() -> None:
    def small_tree(prompt: str) -> str:
        if "Is this subtask complex" in prompt:
            return "yes" if "Research" in prompt else "no"
        if "Task: Research" in prompt:
            return "1. Lyon facts\n2. Nantes facts"
        return "1. Research\n2. Write"

    llm = ScriptedLLM(planner_script(small_tree))
    resumable(hierarchical_planner(llm, echo).compile(store=":memory:"), GOAL)


def test_replay_calls_no_model_with_the_default_executor(tmp_path: Any) -> None:
    db = tmp_path / "runs.db"
    live = hierarchical_planner(ScriptedLLM(planner_script(tree_script))).compile(store=db)
    result = live.run_sync(GOAL)
    assert result.state.answer == "done: Proofread"
    offline = hierarchical_planner(RaisingLLM()).compile(store=db)
    assert assert_replays(offline, result.run_id).identical


def test_deeper_questions_name_the_tasks_above() -> None:
    llm = ScriptedLLM(planner_script(tree_script))
    state = (
        hierarchical_planner(llm, echo, max_depth=3).compile(store=":memory:").run_sync(GOAL).state
    )
    assert len(state.plan.steps) == 5  # the level-2 subtasks were judged simple
    questions = [r.messages[0].text for r in llm.requests if "complex" in r.messages[0].text]
    lyon = [q for q in questions if "Subtask: Lyon facts" in q]
    assert len(lyon) == 1 and "This task is part of: Research the cities\n" in lyon[0]
