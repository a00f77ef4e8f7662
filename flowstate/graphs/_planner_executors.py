"""The `execute` node: an `ExecutorFn` run as a journaled effect, or a graph run as a subgraph
per step (through a small adapter graph that turns its end state into a `StepOutcome`)."""

import inspect
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel

from flowstate.engine import END, START, CompiledGraph, GraphBuilder, NodeContext, append
from flowstate.errors import GraphBuildError
from flowstate.llm import LLM

from ._common import Executor, ExecutorFn
from ._planner_models import StepJob, StepOutcome
from ._react import react_agent


class _StepRun(BaseModel):
    """State of the adapter graph that runs a graph executor for one step."""

    step_id: int = 0
    task: str = ""
    context: str = ""
    answer: Any = None
    status: Any = None
    error: Any = None
    outcomes: Annotated[list[StepOutcome], append] = []


_FAILED = {"failed", "max_steps", "error", "cancelled"}
"""Executor graph statuses that make a step fail even when an answer is present."""

_Mode: TypeAlias = Literal["function", "graph", "graph_with_context"]
"""How `execute` runs a step: an `ExecutorFn`, or a graph (with or without `context`)."""


def _add_executor(g: GraphBuilder[Any], llm: LLM, executor: Executor | None, name: str) -> _Mode:
    """Add the `execute` node and say how it takes its steps."""
    if executor is None:
        executor = react_agent(llm, name=f"{name}_executor")
    if isinstance(executor, GraphBuilder):
        executor = executor.compile(store=":memory:")
    if isinstance(executor, CompiledGraph):
        g.add_node(
            "execute",
            _adapter(executor, name),
            input_map={"step_id": "exec_step_id", "task": "exec_task", "context": "exec_context"},
            output_map={"outcomes": "outcomes"},
        )
        return "graph_with_context" if "context" in executor.ir.schema.fields else "graph"
    if callable(executor):
        g.add_node("execute", _function_node(executor))
        return "function"
    raise TypeError(
        f"{name}: executor {executor!r} is neither an async function (description, context) -> "
        "(success, result) nor a graph; pass one of those, or None for react_agent(llm)"
    )


def _adapter(executor: CompiledGraph[Any], name: str) -> CompiledGraph[_StepRun]:
    """A two-node graph that runs `executor` on one step and turns its end state into a
    `StepOutcome` (so parallel steps append outcomes instead of fighting over fields)."""
    fields = executor.ir.schema.fields
    problems = [
        f"the executor graph '{executor.name}' has no '{f}' field: {why}"
        for f, why in (
            ("task", "the step goes in as `task: str`"),
            ("answer", "the result comes out of `answer`"),
        )
        if f not in fields
    ]
    if problems:
        raise GraphBuildError(name, problems)
    input_map = {"task": "task"}
    if "context" in fields:
        input_map["context"] = "context"
    output_map = {"answer": "answer"}
    output_map |= {f: f for f in ("status", "error") if f in fields}

    async def package(state: _StepRun) -> dict[str, Any]:
        """Turn the executor's end state into this step's outcome."""
        status = getattr(state.status, "value", state.status)
        answer = state.answer
        ok = answer is not None and str(answer).strip() != "" and status not in _FAILED
        if ok:
            result = answer if isinstance(answer, str) else str(answer)
        else:
            result = str(state.error or f"the executor ended with status {status!r} and no answer")
        return {"outcomes": [StepOutcome(step_id=state.step_id, success=ok, result=result)]}

    g = GraphBuilder(_StepRun, name=f"{name}_step")
    g.add_node("run", executor, input_map=input_map, output_map=output_map)
    g.add_node("package", package)
    g.add_edge(START, "run")
    g.add_edge("run", "package")
    g.add_edge("package", END)
    return g.compile(store=":memory:")


def _function_node(executor: ExecutorFn) -> Any:
    async def run_executor(description: str, context: str) -> list[Any]:
        try:
            result: Any = executor(description, context)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            return [False, f"{type(exc).__name__}: {exc}"]
        if isinstance(result, str):
            return [True, result]
        if isinstance(result, tuple | list) and len(result) == 2:
            return [bool(result[0]), result[1] if isinstance(result[1], str) else str(result[1])]
        return [
            False,
            f"the executor returned {type(result).__name__}; it must return (success, result)",
        ]

    async def execute(job: StepJob, ctx: NodeContext) -> dict[str, Any]:
        """Run one plan step with the executor (a journaled effect)."""
        ok, result = await ctx.effect("executor", run_executor, job.description, job.context)
        return {"outcomes": [StepOutcome(step_id=job.step_id, success=ok, result=result)]}

    return execute
