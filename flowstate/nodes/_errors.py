"""Errors raised by the prebuilt nodes.

    LLMError (flowstate.llm)
    └── LLMOutputError     the model's answer does not fit what the node asked for: no call of
        │                  the structured-output tool, input that fails the output model, or an
        │                  empty answer
        └── LLMTruncated   the answer hit max_tokens and could not be completed (continuations
                           exhausted, or a cut-off tool call, which is never run)

Setup mistakes (a node that writes nothing, tools without a messages field) raise
`flowstate.llm.LLMConfigError` when the node is created; a prompt template that names a missing
state field, or a conversation that breaks the provider's rules, raises `ValueError` when the
node runs. Inside a run, each of these fails the node (`NodeFailed`, with it as `__cause__`).
"""

from __future__ import annotations

from flowstate.llm import LLMError

__all__ = ["LLMOutputError", "LLMTruncated"]


class LLMOutputError(LLMError):
    """The model's answer does not fit what the node asked for; the message names the node."""

    code = "FS505"

    node: str
    """Name of the node whose model call gave the unusable answer."""

    def __init__(self, message: str, *, node: str) -> None:
        super().__init__(message)
        self.node = node
        self.retryable = False


class LLMTruncated(LLMOutputError):
    """The answer was cut off at `max_tokens` and could not be completed within the node's
    bound of continuations, or a tool call was cut off (its input may be incomplete, so it is
    never run). Raise `max_tokens` and resume."""

    code = "FS506"
