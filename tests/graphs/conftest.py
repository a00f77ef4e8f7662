"""Fixtures and helpers for the prebuilt graphs.

- The LLM layer's local Messages API server and `AnthropicLLM` (`messages_server`, `server`,
  `anthropic_llm`, `anyio_backend`), reused from tests/llm.
- `resumable(app, input)`: `assert_resumable` with its databases (one per crash point) on
  tmpfs when there is one.
- `RaisingLLM`: proves a replay calls no model.
- `make_tools(broken=...)`: the same tool definitions, working or raising (for replay).
- `planner_script(plan, execute)`: a stateless model script for planners.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowstate import CompiledGraph
from flowstate.llm import LLMRequest, LLMResponse, Message, ScriptFunction, Tool, ToolSpec, tool
from flowstate.testing import ResumeReport, assert_resumable
from tests.llm.conftest import *  # noqa: F403


def resumable(app: CompiledGraph[Any], input: dict[str, Any], **kwargs: Any) -> ResumeReport:
    """`assert_resumable`, with its per-crash-point databases on tmpfs when there is one."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return assert_resumable(app, input, **kwargs)
    saved = tempfile.tempdir
    d = tempfile.mkdtemp(prefix="flowstate-graphs-", dir=shm)
    tempfile.tempdir = d
    try:
        return assert_resumable(app, input, **kwargs)
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(d, ignore_errors=True)


class RaisingLLM:
    """An `LLM` that fails the test if it is called (replay must serve every call)."""

    def __init__(self, model: str = "scripted") -> None:
        self.model = model  # recorded in every journaled request: keep it equal

    async def complete(self, messages: list[Message], **kwargs: Any) -> LLMResponse:
        raise AssertionError("the model was called during an offline replay")


class ToolCalls:
    """Counts live tool calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []


POPULATION = {"Lyon": 522_250, "Nantes": 323_204}


def make_tools(calls: ToolCalls | None = None, *, broken: bool = False) -> list[Tool[..., Any]]:
    """`population(city)`, `add(a, b)` and `explode(reason)`; with `broken=True` every tool
    raises (same names, descriptions and schemas, so journaled requests still match)."""
    log = calls if calls is not None else ToolCalls()

    def check(name: str, args: dict[str, Any]) -> None:
        if broken:
            raise AssertionError(f"tool {name} was called during an offline replay")
        log.calls.append((name, args))

    @tool
    def population(city: str) -> int:
        """Population of Lyon or Nantes."""
        check("population", {"city": city})
        if city not in POPULATION:
            raise KeyError(f"no data for {city!r}")
        return POPULATION[city]

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        check("add", {"a": a, "b": b})
        return a + b

    @tool
    def explode(reason: str) -> str:
        """Always fails."""
        check("explode", {"reason": reason})
        raise RuntimeError(f"boom: {reason}")

    return [population, add, explode]


def tool_names(specs: list[ToolSpec]) -> list[str]:
    return [s.name for s in specs]


def planner_script(
    plan: Callable[[str], str],
    execute: Callable[[str, str], Any] | None = None,
) -> ScriptFunction:
    """A stateless script for a planner whose executor is the default `react_agent(llm)`.

    Planner prompts (the ones sent with the planner's system prompt) go to `plan(prompt)`;
    the executor's first turn goes to `execute(description, context)` (default: "done: " and
    the description), which may return any script item.
    """

    def script(req: LLMRequest) -> Any:
        if req.system is not None and "planner" in req.system:
            return plan(req.last_user_text)
        description, _, context = req.messages[0].text.partition("\n\n")
        if execute is None:
            return f"done: {description}"
        return execute(description, context)

    return script
