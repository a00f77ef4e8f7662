"""`complete_turn`: one model turn that survives `stop_reason: "max_tokens"`.

A reply cut off at `max_tokens` is not an answer. When it is text, the model is asked to go
on from where it stopped (its partial turn is sent back as the start of its answer, which the
Messages API continues), at most `max_continuations` times, and the pieces are joined into one
turn. A cut-off `tool_use` is never continued or run: its input may be incomplete.
"""

from __future__ import annotations

from typing import Any

from flowstate.llm import (
    LLM,
    LLMResponse,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    Usage,
    assistant,
    thinking_of,
)

__all__ = ["complete_turn", "truncation_reason"]


def truncation_reason(reply: LLMResponse, max_tokens: int, continuations: int) -> str:
    """Why a turn that still ends at `max_tokens` cannot be used, for errors and statuses."""
    if any(isinstance(b, ToolUseBlock) for b in reply.content):
        return (
            f"the model's tool call was cut off at max_tokens={max_tokens} (its input may be "
            "incomplete, so it was not run); raise max_tokens"
        )
    tried = (
        f" and {continuations} continuation{'s' if continuations != 1 else ''}"
        if continuations
        else ""
    )
    return (
        f"the answer was cut off at max_tokens={max_tokens}{tried}; raise max_tokens "
        "(or max_continuations)"
    )


async def complete_turn(
    model: LLM,
    messages: list[Message],
    *,
    max_tokens: int,
    max_continuations: int = 2,
    **kwargs: Any,
) -> tuple[LLMResponse, int]:
    """Call `model`; while the reply is text cut off at `max_tokens`, ask it to continue.

    Returns the (joined) reply and how many continuations were made. The reply still has
    `stop_reason == "max_tokens"` when the bound was reached, when the cut-off part is a tool
    call, or when the model thinks (extended thinking refuses a prefilled answer): the caller
    then ends with a distinct status or error (`truncation_reason` says why).
    """
    reply = await model.complete(messages, max_tokens=max_tokens, **kwargs)
    made = 0
    while (
        reply.truncated
        and made < max_continuations
        and reply.text.strip()
        and not reply.tool_calls
        and thinking_of(model) is None
    ):
        partial = reply.text.rstrip()
        more = await model.complete(
            [*messages, assistant(partial)], max_tokens=max_tokens, **kwargs
        )
        made += 1
        reply = _joined(reply, partial, more)
    return reply, made


def _joined(first: LLMResponse, partial: str, more: LLMResponse) -> LLMResponse:
    thinking = [b for b in first.content if isinstance(b, ThinkingBlock)]
    rest = [b for b in more.content if not isinstance(b, TextBlock)]
    text = partial + more.text
    usage = Usage(
        **{k: getattr(first.usage, k) + getattr(more.usage, k) for k in Usage.model_fields}
    )
    return LLMResponse(
        content=[*thinking, TextBlock(text=text), *rest],
        stop_reason=more.stop_reason,
        usage=usage,
        model=more.model or first.model,
    )
