"""`sequential_planner`: a numbered plan run step by step with pluggable executors; replanning
after failed steps and unusable plans, its bounds, crash-and-resume and offline replay."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from flowstate import GraphBuilder, GraphBuildError
from flowstate.graphs import react_agent, sequential_planner
from flowstate.llm import LLMRequest, ScriptedLLM
from flowstate.testing import assert_replays

from .conftest import RaisingLLM, make_tools, planner_script, resumable

MESSY_PLAN = """Sure! Here is the plan:

1. Find the population of Lyon
2) Find the population of Nantes

**Step 3:** Add the two numbers

Let me know if you want more detail."""

GOAL = {"goal": "How many people live in Lyon and Nantes?"}


def messy_plan(prompt: str) -> str:
    return MESSY_PLAN


def test_runs_a_messy_numbered_plan_with_the_default_react_executor() -> None:
    llm = ScriptedLLM(planner_script(messy_plan))
    app = sequential_planner(llm).compile(store=":memory:")

    result = app.run_sync(GOAL)

    state = result.state
    assert (state.status, state.error) == ("completed", None)
    assert [(s.id, s.description, s.status, s.depends_on) for s in state.plan.steps] == [
        (1, "Find the population of Lyon", "completed", []),
        (2, "Find the population of Nantes", "completed", [1]),
        (3, "Add the two numbers", "completed", [2]),
    ]
    assert state.answer == "done: Add the two numbers"
    assert [o.step_id for o in state.outcomes] == [1, 2, 3]
    # each step ran as a react_agent subgraph, and saw the goal and the earlier results
    third = llm.requests[-1].messages[0].text
    assert third.startswith("Add the two numbers\n\nOverall goal: How many people live")
    assert "- Step 1 (Find the population of Lyon): done: Find the population of Lyon" in third
    assert "- Step 2 (Find the population of Nantes): done: Find" in third
    history = app.history(result.run_id)
    top = [h.node for h in history if h.depth == 0]
    assert top == ["plan", "dispatch", *["execute", "dispatch"] * 3]
    assert [h.node for h in history if h.depth == 2][:2] == ["reason", "finish"]


def test_a_function_executor_gets_each_step_and_its_context() -> None:
    seen: list[tuple[str, str]] = []

    async def executor(description: str, context: str) -> tuple[bool, str]:
        seen.append((description, context))
        return True, f"result of {description.split()[-1]}"

    llm = ScriptedLLM(planner_script(lambda p: "1. Look up Lyon\n2. Look up Nantes"))
    state = sequential_planner(llm, executor).compile(store=":memory:").run_sync(GOAL).state

    assert (state.status, state.answer) == ("completed", "result of Nantes")
    assert seen[0] == ("Look up Lyon", "Overall goal: How many people live in Lyon and Nantes?")
    assert seen[1][1].endswith("Results of earlier steps:\n- Step 1 (Look up Lyon): result of Lyon")
    assert len(llm.requests) == 1  # the executor is not the model


def replanning_script(prompt: str) -> str:
    if "The plan has to change" not in prompt:
        return "1. Look up Lyon\n2. Look up Nantes in the archive\n3. Add them"
    return "1. Look up Nantes online\n2. Add them"


async def archive_is_down(description: str, context: str) -> tuple[bool, str]:
    if "archive" in description:
        return False, "the archive is offline"
    return True, f"ok: {description}"


def test_a_failed_step_is_replanned_keeping_the_completed_steps() -> None:
    llm = ScriptedLLM(planner_script(replanning_script))
    app = sequential_planner(llm, archive_is_down).compile(store=":memory:")
    state = app.run_sync(GOAL).state

    assert (state.status, state.replans, state.answer) == ("completed", 1, "ok: Add them")
    assert [(s.id, s.description, s.status, s.depends_on) for s in state.plan.steps] == [
        (1, "Look up Lyon", "completed", []),
        (4, "Look up Nantes online", "completed", [1]),
        (5, "Add them", "completed", [4]),
    ]
    assert [(o.step_id, o.success) for o in state.outcomes] == [
        (1, True),
        (2, False),
        (4, True),
        (5, True),
    ]
    replan = llm.requests[1].messages[0].text
    assert "1. Look up Lyon\n   Result: ok: Look up Lyon" in replan
    assert "2. Look up Nantes in the archive\n   Error: the archive is offline" in replan
    assert state.feedback is None


def test_replanning_is_bounded_by_max_replans() -> None:
    async def always_fails(description: str, context: str) -> tuple[bool, str]:
        return False, "no network"

    llm = ScriptedLLM(planner_script(lambda p: "1. Fetch the data"))
    app = sequential_planner(llm, always_fails, max_replans=1).compile(store=":memory:")
    result = app.run_sync(GOAL)

    state = result.state
    assert result.status == "completed"  # the run finished; the plan did not
    assert (state.status, state.replans, state.answer) == ("failed", 1, None)
    assert state.error is not None
    assert "no network" in state.error and "no replan left: max_replans=1" in state.error
    assert len(llm.requests) == 2


def test_an_unusable_plan_is_sent_back_with_the_reason() -> None:
    def script(prompt: str) -> str:
        if "could not be used" in prompt:
            return "- Fetch the data\n- Summarise it"
        return "I would start by fetching the data, then summarise it."

    llm = ScriptedLLM(planner_script(script))
    state = sequential_planner(llm).compile(store=":memory:").run_sync(GOAL).state

    assert (state.status, state.replans) == ("completed", 1)
    assert [s.description for s in state.plan.steps] == ["Fetch the data", "Summarise it"]
    assert "Your last answer could not be used: your answer had no numbered list" in (
        llm.requests[1].messages[0].text
    )

    never = ScriptedLLM(planner_script(lambda p: "No."))
    state = sequential_planner(never, max_replans=0).compile(store=":memory:").run_sync(GOAL).state
    assert (state.status, len(never.requests)) == ("failed", 1)
    assert state.error is not None and state.error.startswith("no usable plan")


def test_a_plan_longer_than_max_plan_steps_is_sent_back() -> None:
    def script(prompt: str) -> str:
        if "could not be used" in prompt:
            return "1. a\n2. b"
        return "1. a\n2. b\n3. c"

    llm = ScriptedLLM(planner_script(script))
    app = sequential_planner(llm, max_plan_steps=2).compile(store=":memory:")
    state = app.run_sync(GOAL).state
    assert (state.status, len(state.plan.steps)) == ("completed", 2)
    assert "your plan has 3 steps; use at most 2" in llm.requests[1].messages[0].text


def test_executor_exceptions_and_bad_results_fail_the_step() -> None:
    async def raises(description: str, context: str) -> tuple[bool, str]:
        raise ConnectionError("host unreachable")

    async def returns_junk(description: str, context: str) -> Any:
        return 42

    llm = ScriptedLLM(planner_script(lambda p: "1. Fetch"))
    for executor, expected in [
        (raises, "ConnectionError: host unreachable"),
        (returns_junk, "the executor returned int"),
    ]:
        app = sequential_planner(llm, executor, max_replans=0).compile(store=":memory:")
        state = app.run_sync(GOAL).state
        assert state.status == "failed"
        assert state.plan.steps[0].status == "failed"
        assert expected in (state.plan.steps[0].result or "")


def test_a_react_executor_that_runs_out_of_steps_fails_the_step() -> None:
    def plan(prompt: str) -> str:
        return "1. Add forever" if "The plan has to change" not in prompt else "1. Just answer"

    def execute(description: str, context: str) -> Any:
        if description == "Add forever":
            return {"tool_calls": [{"name": "add", "input": {"a": 1, "b": 1}, "id": "t1"}]}
        return "42"

    llm = ScriptedLLM(planner_script(plan, execute))
    executor = react_agent(llm, make_tools(), max_steps=1)
    state = sequential_planner(llm, executor).compile(store=":memory:").run_sync(GOAL).state

    assert (state.status, state.answer) == ("completed", "42")
    assert state.outcomes[0].success is False
    assert "max_steps=1" in state.outcomes[0].result


def test_executor_graphs_must_take_a_task_and_give_an_answer() -> None:
    class Wrong(BaseModel):
        question: str
        reply: str = ""

    g = GraphBuilder(Wrong, name="wrong")
    g.add_node("noop", lambda s: None)
    g.add_edge("__start__", "noop")
    g.add_edge("noop", "__end__")
    with pytest.raises(GraphBuildError) as err:
        sequential_planner(ScriptedLLM(["x"]), g)
    assert "has no 'task' field" in str(err.value) and "has no 'answer' field" in str(err.value)


def test_an_executor_graph_with_a_context_field_gets_the_context_there() -> None:
    class Worker(BaseModel):
        task: str
        context: str = ""
        answer: str | None = None

    def work(s: Worker) -> dict[str, Any]:
        return {"answer": f"{s.task} | {s.context.count('Step')} earlier"}

    g = GraphBuilder(Worker, name="worker")
    g.add_node(work)
    g.add_edge("__start__", "work")
    g.add_edge("work", "__end__")
    llm = ScriptedLLM(planner_script(lambda p: "1. a\n2. b"))
    state = sequential_planner(llm, g).compile(store=":memory:").run_sync(GOAL).state
    assert [s.result for s in state.plan.steps] == ["a | 0 earlier", "b | 1 earlier"]


# -- durability -------------------------------------------------------------------------------


def test_survives_a_crash_at_every_point_inside_a_react_subgraph_step() -> None:
    # one step keeps this quick: the step is a subgraph (adapter) holding a subgraph (react),
    # so the crash points include both nested runs
    llm = ScriptedLLM(planner_script(lambda p: "1. Find Lyon"))
    app = sequential_planner(llm).compile(store=":memory:")
    report = resumable(app, GOAL)
    assert report.crash_points > 20


def test_survives_a_crash_at_every_point_while_replanning() -> None:
    def short(prompt: str) -> str:  # one step done, one failed, one new one
        if "The plan has to change" in prompt:
            return "1. Look up Nantes online"
        return "1. Look up Lyon\n2. Look up Nantes in the archive"

    llm = ScriptedLLM(planner_script(short))
    app = sequential_planner(llm, archive_is_down).compile(store=":memory:")
    resumable(app, GOAL)


def test_replay_calls_no_model_and_no_executor(tmp_path: Any) -> None:
    db = tmp_path / "runs.db"

    def execute(description: str, context: str) -> Any:
        if "archive" in description:
            return {"text": "", "stop_reason": "refusal"}  # the react executor fails
        return f"ok: {description}"

    live = sequential_planner(ScriptedLLM(planner_script(replanning_script, execute)))
    result = live.compile(store=db).run_sync(GOAL)
    assert (result.state.status, result.state.replans) == ("completed", 1)

    offline = sequential_planner(RaisingLLM()).compile(store=db)
    assert assert_replays(offline, result.run_id).identical

    async def raising_executor(description: str, context: str) -> tuple[bool, str]:
        raise AssertionError("the executor ran during an offline replay")

    fn_live = sequential_planner(ScriptedLLM(planner_script(replanning_script)), archive_is_down)
    fn_result = fn_live.compile(store=db).run_sync(GOAL)
    fn_offline = sequential_planner(RaisingLLM(), raising_executor).compile(store=db)
    assert assert_replays(fn_offline, fn_result.run_id).identical


def test_script_requests_are_all_valid_conversations() -> None:
    llm = ScriptedLLM(planner_script(messy_plan))  # ScriptedLLM checks each request
    sequential_planner(llm).compile(store=":memory:").run_sync(GOAL)
    assert all(isinstance(r, LLMRequest) for r in llm.requests) and len(llm.requests) == 4
