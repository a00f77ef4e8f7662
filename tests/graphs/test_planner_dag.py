"""`dag_planner`: plans with dependencies validated with networkx (cycles, unknown and reused
numbers fed back to the model), ready steps run in parallel through `Send`, replanning after
failures, crash-and-resume and offline replay."""

from __future__ import annotations

from typing import Any

from flowstate.graphs import dag_planner, dag_problems
from flowstate.llm import ScriptedLLM
from flowstate.testing import assert_replays

from .conftest import RaisingLLM, planner_script, resumable

GOAL = {"goal": "Compare the populations of Lyon and Nantes"}

DIAMOND = """1. Find the population of Lyon (depends on: none)
2. Find the population of Nantes (depends on: none)
3. Compare the two (depends on: 1, 2)"""


async def echo(description: str, context: str) -> tuple[bool, str]:
    return True, f"<{description}>"


def test_independent_steps_run_in_parallel_and_the_join_sees_both_results() -> None:
    llm = ScriptedLLM(planner_script(lambda p: DIAMOND))
    app = dag_planner(llm).compile(store=":memory:")
    result = app.run_sync(GOAL)

    state = result.state
    assert (state.status, state.answer) == ("completed", "done: Compare the two")
    assert [(s.id, s.depends_on, s.status) for s in state.plan.steps] == [
        (1, [], "completed"),
        (2, [], "completed"),
        (3, [1, 2], "completed"),
    ]
    top = [(h.step, h.task_path) for h in app.history(result.run_id) if h.depth == 0]
    assert top == [
        (0, "plan"),
        (1, "dispatch"),
        (2, "execute[0]"),  # steps 1 and 2: one Send each, in the same engine step
        (2, "execute[1]"),
        (3, "dispatch"),
        (4, "execute[0]"),
        (5, "dispatch"),
    ]
    compare = llm.requests[-1].messages[0].text
    assert "- Step 1 (Find the population of Lyon): done: Find the population of Lyon" in compare
    assert "- Step 2 (Find the population of Nantes): done: Find" in compare
    # the planner asked for dependencies
    assert "(depends on: 1, 2)" in llm.requests[0].messages[0].text


def test_several_sinks_make_a_combined_answer() -> None:
    llm = ScriptedLLM(planner_script(lambda p: "1. Lyon\n2. Nantes"))
    state = dag_planner(llm, echo).compile(store=":memory:").run_sync(GOAL).state
    assert state.answer == "Step 1 (Lyon): <Lyon>\nStep 2 (Nantes): <Nantes>"


def test_a_cyclic_plan_is_fed_back_to_the_model() -> None:
    def plan(prompt: str) -> str:
        if "could not be used" in prompt:
            return DIAMOND
        return "1. Draft (depends on: 2)\n2. Review (depends on: 1)\n3. Publish (depends on: 2)"

    llm = ScriptedLLM(planner_script(plan))
    state = dag_planner(llm, echo).compile(store=":memory:").run_sync(GOAL).state

    assert (state.status, state.replans) == ("completed", 1)
    feedback = llm.requests[1].messages[0].text
    assert "your plan was not valid" in feedback
    assert "depend on each other in a cycle" in feedback
    assert "1 → 2 → 1" in feedback or "2 → 1 → 2" in feedback


def test_unknown_and_duplicate_step_numbers_are_fed_back_together() -> None:
    def plan(prompt: str) -> str:
        if "could not be used" in prompt:
            return DIAMOND
        return "1. A\n1. B\n2. C (depends on: 7)"

    llm = ScriptedLLM(planner_script(plan))
    state = dag_planner(llm, echo).compile(store=":memory:").run_sync(GOAL).state
    assert state.status == "completed"
    feedback = llm.requests[1].messages[0].text
    assert "(1) step number 1 is used twice" in feedback
    assert "(2) step 2 depends on step 7, which does not exist" in feedback


def test_an_invalid_plan_fails_the_run_when_no_replan_is_left() -> None:
    llm = ScriptedLLM(planner_script(lambda p: "1. A (depends on: 1)"))
    state = dag_planner(llm, echo, max_replans=1).compile(store=":memory:").run_sync(GOAL).state
    assert (state.status, state.replans, len(llm.requests)) == ("failed", 1, 2)
    assert state.error is not None and "step 1 depends on itself" in state.error
    assert state.outcomes == []


def replan_after_failure(prompt: str) -> str:
    if "The plan has to change" not in prompt:
        return DIAMOND.replace("Nantes", "Nantes from the archive")
    return (
        "4. Find the population of Nantes online (depends on: none)\n"
        "5. Compare the two (depends on: 1, 4)"
    )


async def archive_is_down(description: str, context: str) -> tuple[bool, str]:
    if "archive" in description:
        return False, "the archive is offline"
    return True, f"<{description}>"


def test_a_failed_step_is_replanned_and_may_depend_on_completed_steps() -> None:
    llm = ScriptedLLM(planner_script(replan_after_failure))
    state = dag_planner(llm, archive_is_down).compile(store=":memory:").run_sync(GOAL).state

    assert (state.status, state.replans) == ("completed", 1)
    assert [(s.id, s.status, s.depends_on) for s in state.plan.steps] == [
        (1, "completed", []),  # ran in parallel with the failed step: kept
        (4, "completed", []),
        (5, "completed", [1, 4]),
    ]
    assert state.answer == "<Compare the two>"
    replan = llm.requests[1].messages[0].text
    assert "1. Find the population of Lyon\n   Result: <Find the population of Lyon>" in replan
    assert (
        "2. Find the population of Nantes from the archive\n   Error: the archive is offline"
        in (replan)
    )
    assert "Number the new steps from 4 on" in replan


def test_a_replan_that_reuses_a_completed_number_is_refused() -> None:
    def plan(prompt: str) -> str:
        if "The plan has to change" not in prompt:
            return "1. Lyon\n2. Nantes from the archive"
        if "already used" in prompt:
            return "3. Nantes online (depends on: none)"
        return "1. Nantes online (depends on: none)"

    llm = ScriptedLLM(planner_script(plan))
    state = dag_planner(llm, archive_is_down).compile(store=":memory:").run_sync(GOAL).state
    assert (state.status, state.replans) == ("completed", 2)
    second_replan = llm.requests[2].messages[0].text
    assert "step number 1 is already used by a completed step" in second_replan
    assert "2. Nantes from the archive\n   Error: the archive is offline" in second_replan
    assert [s.id for s in state.plan.steps] == [1, 3]


def test_dag_problems() -> None:
    assert dag_problems([(1, []), (2, [1]), (3, [1, 2])]) == []
    assert dag_problems([]) == ['your answer had no numbered list of steps ("1. ...", "2. ...")']
    assert dag_problems([(3, [1])], completed=[1]) == []
    problems = dag_problems([(1, [3]), (2, [2]), (3, [1]), (3, [])], completed=[9])
    assert problems[0] == "step number 3 is used twice; number the steps 1, 2, 3, …"
    assert "step 2 depends on itself" in problems
    assert any("in a cycle" in p for p in problems)
    assert dag_problems([(1, [])] * 3, max_steps=2) == ["your plan has 3 steps; use at most 2"]


# -- durability -------------------------------------------------------------------------------


def test_survives_a_crash_at_every_point_with_parallel_steps_and_a_replan() -> None:
    llm = ScriptedLLM(planner_script(replan_after_failure))
    resumable(dag_planner(llm, archive_is_down).compile(store=":memory:"), GOAL)


def test_survives_a_crash_at_every_point_with_parallel_react_subgraphs() -> None:
    llm = ScriptedLLM(planner_script(lambda p: "1. Lyon\n2. Nantes"))
    report = resumable(dag_planner(llm).compile(store=":memory:"), GOAL)
    assert report.crash_points > 30


def test_replay_calls_no_model(tmp_path: Any) -> None:
    db = tmp_path / "runs.db"

    def execute(description: str, context: str) -> Any:
        if "archive" in description:
            return {"text": "", "stop_reason": "refusal"}
        return f"ok: {description}"

    live = dag_planner(ScriptedLLM(planner_script(replan_after_failure, execute)))
    result = live.compile(store=db).run_sync(GOAL)
    assert (result.state.status, result.state.replans) == ("completed", 1)
    offline = dag_planner(RaisingLLM()).compile(store=db)
    assert assert_replays(offline, result.run_id).identical
