"""`RateLimitedLLM`: an `LLM` whose every call first waits for a token of a rate limit —
e.g. `flowstate.checkpoints.RateLimit`, a token bucket in the fleet's database, so "at
most 50 calls a minute per API key" holds for every worker together.

Wrapped by a node's `JournaledLLM`, the wait happens inside the journaled effect: a
call served from the journal (a resume, a replay) takes no token."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._models import LLMResponse, Message
from ._protocol import LLM

__all__ = ["Limiter", "RateLimitedLLM"]


@runtime_checkable
class Limiter(Protocol):
    """Anything that can make a caller wait for ``n`` tokens (returns the seconds waited)."""

    async def acquire(self, n: float = 1.0) -> float: ...


class RateLimitedLLM:
    """``llm`` behind ``limiter``: one token per call (``tokens_per_call``). Every other
    attribute (``model``, ``thinking``) is the wrapped model's."""

    def __init__(self, llm: LLM, limiter: Limiter, *, tokens_per_call: float = 1.0) -> None:
        if not isinstance(limiter, Limiter):
            raise TypeError(
                f"limiter must have an async acquire(n) method (e.g. flowstate.checkpoints."
                f"RateLimit), not {type(limiter).__name__}"
            )
        self.llm = llm
        self.limiter = limiter
        self.tokens_per_call = tokens_per_call
        self.waited = 0.0
        """Seconds this wrapper's calls spent waiting for the limit."""

    def __getattr__(self, name: str) -> Any:
        if name in ("llm", "limiter", "tokens_per_call", "waited"):
            raise AttributeError(name)
        return getattr(self.llm, name)

    def __repr__(self) -> str:
        return f"RateLimitedLLM({self.llm!r}, {self.limiter!r})"

    async def complete(self, messages: list[Message], **kwargs: Any) -> LLMResponse:
        self.waited += await self.limiter.acquire(self.tokens_per_call)
        return await self.llm.complete(messages, **kwargs)
