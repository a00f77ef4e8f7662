"""`messages_reducer`: an append reducer for conversations that keeps them sendable.

The Anthropic Messages API (and `ScriptedLLM`, which checks the same way) refuses a
conversation whose roles do not alternate, that has an empty message, or where a `tool_use`
is not answered by exactly one `tool_result` in the very next user message. Catching that when
the message is appended names the node that broke the conversation; catching it at the next
model call only names the victim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from flowstate.engine import Reducer
from flowstate.llm import Message, TextBlock, ToolResultBlock, ToolUseBlock

__all__ = ["append_problems", "messages_reducer"]


def append_problems(old: Sequence[Message], new: Sequence[Message]) -> list[str]:
    """What appending `new` to `old` would break (empty if nothing).

    Only the new messages and their boundary with `old` are checked: what was appended before
    was checked then. An assistant message whose tool calls are not answered yet may end the
    conversation (a tool node answers it next).
    """
    messages = [*old, *new]
    problems: list[str] = []
    for i in range(len(old), len(messages)):
        cur = messages[i]
        prev = messages[i - 1] if i > 0 else None
        where = f"messages[{i}] ({cur.role})"
        if not cur.content:
            problems.append(f"{where} is empty; every message needs content")
        elif any(isinstance(b, TextBlock) and not b.text for b in cur.blocks):
            problems.append(f"{where} has an empty text block; drop it or give it text")
        if prev is None and cur.role != "user":
            problems.append(
                f"{where} starts the conversation; the first message must be a user one"
            )
        if prev is not None and prev.role == cur.role:
            problems.append(
                f"messages[{i - 1}] and messages[{i}] are both {cur.role} messages; roles must "
                "alternate user/assistant (merge them into one message)"
            )
        if cur.role == "assistant":
            if any(isinstance(b, ToolResultBlock) for b in cur.blocks):
                problems.append(
                    f"{where} holds a tool_result block; tool results go in a user message"
                )
            continue
        if any(isinstance(b, ToolUseBlock) for b in cur.blocks):
            problems.append(f"{where} holds a tool_use block; only the model calls tools")
        asked = (
            [b.id for b in prev.blocks if isinstance(b, ToolUseBlock)]
            if prev is not None and prev.role == "assistant"
            else []
        )
        answered = Counter(b.tool_use_id for b in cur.blocks if isinstance(b, ToolResultBlock))
        missing = [a for a in asked if a not in answered]
        if missing:
            problems.append(
                f"tool_use ids {missing} of messages[{i - 1}] have no tool_result in {where}; "
                "answer every tool call in the next user message"
            )
        twice = sorted(a for a, n in answered.items() if n > 1)
        if twice:
            problems.append(
                f"{where} answers tool_use ids {twice} more than once; send one tool_result "
                "per call"
            )
        unknown = sorted(a for a in answered if a not in asked)
        if unknown:
            problems.append(
                f"{where} has tool_result blocks for {unknown}, which messages[{i - 1}] did not "
                "ask for"
            )
    return problems


def _append_messages(old: list[Message] | None, new: list[Message]) -> list[Message]:
    # The engine wraps a single message in a list before calling (wrap_item); a direct call
    # may pass one message as well.
    new = [new] if isinstance(new, Message) else list(new)
    history = list(old or ())
    problems = append_problems(history, new)
    if problems:
        listed = "; ".join(f"({n}) {p}" for n, p in enumerate(problems, 1))
        noun = "message" if len(new) == 1 else "messages"
        raise ValueError(
            f"messages_reducer refused to append {len(new)} {noun} to a conversation of "
            f"{len(history)}: {listed}"
        )
    return [*history, *new]


messages_reducer = Reducer("messages", _append_messages, wrap_item=True)
"""Append reducer for `list[Message]` fields that enforces the provider's conversation rules:
roles alternate (starting with user), no message is empty, and every `tool_use` is answered by
exactly one `tool_result` in the next user message. A violation raises `ValueError` naming the
problem, which fails the node that wrote it. A single message is accepted as well as a list.

    messages: Annotated[list[Message], messages_reducer] = []
"""
