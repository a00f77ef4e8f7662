"""Helpers shared by the prebuilt graphs (ReAct agent, planners, crews).

Everything here is small and stable: other modules of `flowstate.graphs` import it.

- `registry_of(tools)`: a `ToolRegistry` from a registry, a list of tools, or None.
- `ask(llm, ctx, prompt)`: one journaled model call inside a node; returns the text.
- `describe_tools(registry)`: the tools as plain text, for prompts that do not use native
  tool use.
- `clip(text, limit)`: shorten text for prompts and error messages.
- `ExecutorFn` / `Executor`: what a planner runs each step with.
- `MemorySpec`: the memory a ReAct agent or a crew recalls from and remembers into, with
  `recall(ctx, spec, query)` and `remember(ctx, spec, text, ...)` used by their nodes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

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
from flowstate.nodes import LLMTruncated, complete_turn, truncation_reason

__all__ = [
    "Executor",
    "ExecutorFn",
    "MemorySpec",
    "ToolsArg",
    "ask",
    "clip",
    "describe_tools",
    "memory_spec",
    "note",
    "recall",
    "registry_of",
    "remember",
    "with_memories",
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
    model again. `prompt` is the text of one user message, or a whole conversation. An answer
    cut off at `max_tokens` is continued (twice at most); still cut off, it raises
    `LLMTruncated` rather than passing a partial answer on as if it were whole.
    """
    messages = [user(prompt)] if isinstance(prompt, str) else list(prompt)
    reply, made = await complete_turn(
        JournaledLLM(llm, ctx), messages, system=system, max_tokens=max_tokens
    )
    if reply.truncated:
        node = str(getattr(ctx, "node", None) or "model call")
        raise LLMTruncated(f"{node}: {truncation_reason(reply, max_tokens, made)}", node=node)
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


MEMORIES_HEADING = "Relevant memories:"
"""First line of the block of recalled memories added to a model's system prompt."""


class MemorySpec(BaseModel):
    """The memory a prebuilt graph recalls from and remembers into (`memory=` of
    `react_agent` and of the crews).

    Before each reasoning call the node retrieves the `k` entries most relevant to its task
    (a journaled `ctx.memory(namespace, kind).retrieve`) and, when there are any, appends them
    to the system prompt of that call as a `Relevant memories:` block. Entries written by the
    run itself (or by its subgraphs) are left out: the model already has them in context.
    Observations (tool results, agents' answers) and final answers are added to the memory
    as the node that produced them commits, so a crashed node never writes twice.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(min_length=1)
    """Shared by every run that names it (an agent, a user, a crew, …)."""
    kind: Literal["episodic", "semantic", "composite", "working"] = "episodic"
    """The kind of memory (see `flowstate.memory`)."""
    k: int = Field(default=3, ge=0)
    """How many memories to recall before each reasoning call (0: remember only)."""
    remember: Literal["observations", "answers", "both"] = "both"
    """What is added: tool results and agents' answers, final answers, or both."""

    @property
    def observations(self) -> bool:
        """Whether observations are remembered."""
        return self.remember in ("observations", "both")

    @property
    def answers(self) -> bool:
        """Whether final answers are remembered."""
        return self.remember in ("answers", "both")


def memory_spec(memory: Any, where: str) -> MemorySpec | None:
    """`memory` as a `MemorySpec` (a mapping is validated into one); None stays None."""
    if memory is None or isinstance(memory, MemorySpec):
        return memory
    if isinstance(memory, dict):
        return MemorySpec.model_validate(memory)
    raise TypeError(
        f"{where}(memory={memory!r}): pass MemorySpec(namespace=..., kind=..., k=..., "
        "remember=...) or None"
    )


def _own(entry_run: Any, run_id: str) -> bool:
    """Whether an entry was written by the run `run_id` or one of its subgraph runs."""
    return isinstance(entry_run, str) and (
        entry_run == run_id or entry_run.startswith(f"{run_id}/")
    )


async def recall(ctx: Any, spec: MemorySpec | None, query: str) -> list[str]:
    """The contents of the `spec.k` memories most relevant to `query`, best first, leaving
    out the ones this run wrote. Every read is a journaled `retrieve` of the node's memory."""
    if spec is None or spec.k == 0:
        return []
    mem = ctx.memory(spec.namespace, spec.kind)
    n = spec.k
    while True:
        hits = await mem.retrieve(query, n)
        kept = [h for h in hits if not _own(h.entry.metadata.get("run_id"), ctx.run_id)]
        if len(kept) >= spec.k or len(hits) < n:
            return [h.entry.content for h in kept[: spec.k]]
        n *= 2  # some were this run's own: look further


def with_memories(system: str | None, memories: list[str]) -> str | None:
    """`system` with a `Relevant memories:` block appended (unchanged without memories)."""
    if not memories:
        return system
    lines = [MEMORIES_HEADING]
    for content in memories:
        text = clip(content.strip(), 1500).replace("\n", "\n  ")
        lines.append(f"- {text}")
    block = "\n".join(lines)
    return f"{system}\n\n{block}" if system else block


def remember(
    ctx: Any,
    spec: MemorySpec | None,
    text: str,
    *,
    source: Literal["observation", "answer"],
    importance: float = 0.5,
    **metadata: Any,
) -> None:
    """Add `text` to the memory when `spec` remembers `source`s; the write is buffered and
    commits with the node's activation."""
    if spec is None or not text.strip():
        return
    if not (spec.observations if source == "observation" else spec.answers):
        return
    meta = {"source": source, "run_id": ctx.run_id, "node": ctx.node, **metadata}
    extra: dict[str, Any] = {}
    if spec.kind == "semantic":  # facts live under a key: one per distinct text
        extra["key"] = f"{source}:{hashlib.sha256(text.encode()).hexdigest()[:24]}"
    ctx.memory(spec.namespace, spec.kind).add(
        clip(text, 4000), importance=importance, metadata=meta, **extra
    )


def note(task: str, label: str, text: str) -> str:
    """The text of a memory: what it was about, then what was learnt."""
    return f"Task: {clip(task.strip(), 500)}\n{label}: {text.strip()}"
