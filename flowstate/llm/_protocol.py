"""The `LLM` protocol every model backend implements (`AnthropicLLM`, `ScriptedLLM`, …)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ._models import CacheMode, LLMResponse, Message, ToolChoice, ToolSpec

__all__ = ["LLM", "TokenCallback"]

TokenCallback = Callable[[str], None]
"""Called with each text delta as it is generated, in order; the deltas concatenate to
`LLMResponse.text`. It runs on the event loop thread, so it must not block."""


@runtime_checkable
class LLM(Protocol):
    """A chat model that can answer with text and native tool calls.

    Implementations must not mutate `messages` or `tools`, and must raise `LLMError` (or a
    subclass) for every failure that is not a bug in the caller's own callback.
    """

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
        """Send the conversation and return the model's next turn.

        `tool_choice` says how the model must use `tools` (None: the provider's default,
        auto); `stop_sequences` end generation when the model writes one; `cache="auto"`
        asks for prompt-cache breakpoints where the backend supports them (others ignore it).
        Callers pass these three only when they differ from the defaults, so an `LLM` written
        before they existed keeps working for calls that do not need them.

        `on_token`, when given, streams the answer: it receives each text delta as it arrives,
        and the returned `LLMResponse` is the same as without streaming. A backend that cannot
        honour `temperature` raises `LLMConfigError` instead of silently ignoring it.
        """
        ...
