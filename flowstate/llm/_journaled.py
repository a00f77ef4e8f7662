"""`JournaledLLM` and `JournaledTools`: model and tool calls made through a journal.

Inside a flowstate node, every impure call must go through `ctx.effect(...)` so that a
resumed or replayed activation gets the recorded result back instead of calling again. These
two wrappers do that for the LLM layer:

    llm = JournaledLLM(AnthropicLLM(), ctx)       # ctx: the node's NodeContext
    reply = await llm.complete(messages, tools=registry.specs)
    outcomes = await JournaledTools(registry, ctx).run_calls(reply.tool_calls)

The journaled argument of a model call is the whole `LLMRequest` (as JSON) and its result is
the `LLMResponse` (as JSON), so a journal row says exactly what was asked and answered. This
module does not import the engine: `ctx` is anything that fits `EffectContext`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from ._models import (
    CacheMode,
    LLMRequest,
    LLMResponse,
    Message,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from ._prices import MODEL_KEY_SEP
from ._protocol import LLM, TokenCallback
from ._tools import ToolOutcome, ToolRegistry

__all__ = [
    "LLM_EFFECT",
    "TOOL_EFFECT_PREFIX",
    "EffectContext",
    "JournaledLLM",
    "JournaledTools",
    "thinking_of",
    "usage_counts",
]

LLM_EFFECT = "llm.complete"
"""Effect name of a journaled model call."""
TOOL_EFFECT_PREFIX = "tool:"
"""Effect name of a journaled tool call is this prefix plus the tool's name (`tool:search`)."""


@runtime_checkable
class EffectContext(Protocol):
    """What the wrappers need from a node context (`flowstate.NodeContext` fits)."""

    async def effect(
        self,
        name: str,
        fn: Callable[..., Any] | Callable[..., Awaitable[Any]],
        *args: Any,
        result_type: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` once and journal it; on re-runs, return the record."""
        ...

    def token(self, text: str) -> None:
        """Report streamed text as a live event (not journaled)."""
        ...

    def add_usage(self, input_tokens: int = 0, output_tokens: int = 0, **counts: int) -> None:
        """Add token counts to the activation's usage (other counts by name)."""
        ...


class JournaledLLM:
    """An `LLM` whose calls are journaled effects of a node: called once, then served.

    Live calls stream their text through `ctx.token` (and `on_token`, when given) unless
    `stream=False`; a call served from the journal emits no tokens. The response's usage is
    added to `ctx.add_usage` on every call, including calls served from the journal, so the
    usage committed with a resumed activation covers all of its calls.
    """

    llm: LLM
    """The model that live calls go to."""
    stream: bool
    """Whether live calls stream tokens to `ctx.token`."""

    def __init__(self, llm: LLM, ctx: EffectContext, *, stream: bool = True) -> None:
        self.llm = llm
        self.stream = stream
        self._ctx = ctx

    @property
    def model(self) -> str | None:
        """The wrapped model's name, when it has one (recorded in every request)."""
        name = getattr(self.llm, "model", None)
        return name if isinstance(name, str) else None

    @property
    def thinking(self) -> int | Literal["adaptive"] | None:
        """The wrapped model's extended-thinking setting (see `thinking_of`)."""
        return thinking_of(self.llm)

    def __repr__(self) -> str:
        return f"JournaledLLM({self.llm!r})"

    async def complete(
        self,
        messages: list[Message],
        *,
        system: str | None = None,
        tools: list[ToolSpec] | None = None,
        max_tokens: int = 1024,
        temperature: float | None = None,
        on_token: TokenCallback | None = None,
        tool_choice: ToolChoice | None = None,
        stop_sequences: list[str] | None = None,
        cache: CacheMode = "off",
    ) -> LLMResponse:
        """Journal the request as the effect `llm.complete` and return the (recorded) answer.

        The usage added to the activation holds the four token counts, and the same counts
        per model under `"<count>@<model>"` keys, so the cost can be priced per model later.
        """
        request = LLMRequest(
            messages=list(messages),
            system=system,
            tools=list(tools or []),
            max_tokens=max_tokens,
            temperature=temperature,
            model=self.model,
            tool_choice=tool_choice,
            stop_sequences=list(stop_sequences or []),
            cache=cache,
            thinking=self.thinking,
        )
        ctx = self._ctx
        streaming = self.stream or on_token is not None

        def relay(text: str) -> None:
            if self.stream:
                ctx.token(text)
            if on_token is not None:
                on_token(text)

        async def call(raw: dict[str, Any]) -> dict[str, Any]:
            req = LLMRequest.model_validate(raw)
            extra: dict[str, Any] = {}
            if req.tool_choice is not None:
                extra["tool_choice"] = req.tool_choice
            if req.stop_sequences:
                extra["stop_sequences"] = req.stop_sequences
            if req.cache != "off":
                extra["cache"] = req.cache
            response = await self.llm.complete(
                req.messages,
                system=req.system,
                tools=req.tools or None,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                on_token=relay if streaming else None,
                **extra,
            )
            return response.model_dump(mode="json")

        recorded = await ctx.effect(LLM_EFFECT, call, request.journal_json())
        response = (
            recorded if isinstance(recorded, LLMResponse) else LLMResponse.model_validate(recorded)
        )
        ctx.add_usage(**usage_counts(response.usage, response.model or self.model))
        return response


def usage_counts(usage: Usage, model: str | None) -> dict[str, int]:
    """What one call adds to an activation's usage: the counts, and again per model."""
    counts = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        **{k: v for k, v in usage.counts().items() if k not in ("input_tokens", "output_tokens")},
    }
    if model:
        counts.update({f"{k}{MODEL_KEY_SEP}{model}": v for k, v in usage.counts().items()})
    return counts


def thinking_of(llm: object) -> int | Literal["adaptive"] | None:
    """A model's extended-thinking setting: its `thinking` attribute when it is a token
    budget or `"adaptive"`, else None (off). Forced tool use is refused while it is on."""
    value = getattr(llm, "thinking", None)
    if isinstance(value, bool):
        return None
    if value == "adaptive":
        return "adaptive"
    return value if isinstance(value, int) else None


class JournaledTools:
    """Runs tool calls of a `ToolRegistry` as journaled effects named `tool:<name>`.

    On a re-run (resume after a crash), a call that completed is served from the journal and
    only the calls that had not completed run again. Calls run concurrently; outcomes come
    back in the order of the calls. Tool errors are outcomes (`is_error=True`), as with
    `ToolRegistry.run_calls`.
    """

    registry: ToolRegistry
    """The tools that live calls go to."""

    def __init__(self, registry: ToolRegistry, ctx: EffectContext) -> None:
        self.registry = registry
        self._ctx = ctx

    def __repr__(self) -> str:
        return f"JournaledTools({self.registry!r})"

    @property
    def specs(self) -> list[ToolSpec]:
        """Definitions of the tools, to pass as `complete(tools=...)`."""
        return self.registry.specs

    async def _run(self, raw: dict[str, Any]) -> dict[str, Any]:
        outcome = await self.registry.run_call(ToolCall.model_validate(raw))
        return outcome.model_dump(mode="json")

    async def run_call(self, call: ToolCall) -> ToolOutcome:
        """Run (or serve from the journal) one tool call."""
        recorded = await self._ctx.effect(
            TOOL_EFFECT_PREFIX + call.name, self._run, call.model_dump(mode="json")
        )
        if isinstance(recorded, ToolOutcome):
            return recorded
        return ToolOutcome.model_validate(recorded)

    async def run_calls(self, calls: Sequence[ToolCall]) -> list[ToolOutcome]:
        """Run the calls concurrently; outcomes come back in the order of `calls`."""
        # gather starts one task per call in list order, and each task enters ctx.effect
        # before its first suspension, so the calls take journal sequence numbers in call
        # order however they then interleave: a re-run matches each call with its own record.
        return list(await asyncio.gather(*(self.run_call(c) for c in calls)))
