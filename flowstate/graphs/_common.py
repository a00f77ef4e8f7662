"""Helpers shared by the prebuilt graphs (ReAct agent, planners, crews).

Everything here is small and stable: other modules of `flowstate.graphs` import it.

- `registry_of(tools)`: a `ToolRegistry` from a registry, a list of tools, or None.
- `ask(llm, ctx, prompt)`: one journaled model call inside a node; returns the text.
- `describe_tools(registry)`: the tools as plain text, for prompts that do not use native
  tool use.
- `clip(text, limit)`: shorten text for prompts and error messages.
- `ExecutorFn` / `Executor`: what a planner runs each step with.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias

from flowstate.engine import CompiledGraph, GraphBuilder
from flowstate.llm import (
    LLM,
    EffectContext,
    JournaledLLM,
    Message,
    Tool,
    ToolRegistry,
    user,
)

__all__ = [
    "Executor",
    "ExecutorFn",
    "ToolsArg",
    "ask",
    "clip",
    "describe_tools",
    "registry_of",
]

ToolsArg: TypeAlias = ToolRegistry | Iterable[Tool[..., Any] | Callable[..., Any]] | None
"""Tools as a `ToolRegistry`, or a list of `@tool` functions (or plain typed functions)."""

ExecutorFn: TypeAlias = Callable[[str, str], Awaitable[tuple[bool, str]]]
"""`async (step_description, context) -> (success, result)`: runs one plan step.

`context` holds the overall goal and the results of the steps this one builds on. The call
is a journaled effect of the planner's `execute` node: it runs once, and a resumed or
replayed run gets the recorded `(success, result)` back. An exception it raises counts as a
failed step whose result is the error."""

Executor: TypeAlias = ExecutorFn | CompiledGraph[Any] | GraphBuilder[Any]
"""An `ExecutorFn`, or a graph run as a subgraph per step: it must have a `task: str` field
(the step and its context go in) and an `answer` field (the result comes out); optional
`context: str` (filled with the context instead of appending it to `task`), `status` (a
step fails when it ends `"failed"` or `"max_steps"`) and `error`. `react_agent(...)` fits."""


def registry_of(tools: ToolsArg) -> ToolRegistry:
    """`tools` as a `ToolRegistry` (an empty one for None)."""
    if tools is None:
        return ToolRegistry()
    if isinstance(tools, ToolRegistry):
        return tools
    return ToolRegistry(list(tools))


async def ask(
    llm: LLM,
    ctx: EffectContext,
    prompt: str | Sequence[Message],
    *,
    system: str | None = None,
    max_tokens: int = 1024,
) -> str:
    """Ask `llm` once, as a journaled effect of the node that owns `ctx`; return the text.

    A resumed or replayed activation gets the recorded answer back instead of calling the
    model again. `prompt` is the text of one user message, or a whole conversation.
    """
    messages = [user(prompt)] if isinstance(prompt, str) else list(prompt)
    reply = await JournaledLLM(llm, ctx).complete(messages, system=system, max_tokens=max_tokens)
    return reply.text


def describe_tools(registry: ToolRegistry) -> str:
    """One paragraph per tool (name, description, JSON schema of its input), for prompts."""
    if not len(registry):
        return "(no tools)"
    parts = []
    for spec in registry.specs:
        schema = json.dumps(spec.input_schema, separators=(",", ":"), sort_keys=True)
        description = spec.description.strip() or "(no description)"
        parts.append(f"- {spec.name}: {description}\n  input schema: {schema}")
    return "\n".join(parts)


def clip(text: str, limit: int = 2000) -> str:
    """`text`, cut to `limit` characters with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"
