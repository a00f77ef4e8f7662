"""Exceptions raised by `flowstate.llm`.

The tree separates blame, so callers catch exactly what they can handle::

    FlowstateError (flowstate.errors)
    └── LLMError              a model call failed: HTTP status, connection, malformed response
    ├── LLMConfigError        your setup: missing API key, bad `--llm` spec, bad script file,
    │                         invalid tool definition or registry
    ├── ScriptExhausted       a ScriptedLLM was asked for more responses than it was given
    └── ToolInputError        the model called a tool with arguments that fail its schema

`ToolInputError` is raised by `Tool.validate_input`; `Tool.invoke` never raises it but turns it
into an error `ToolOutcome`, so the model sees what it got wrong and can try again.
"""

from __future__ import annotations

from flowstate.errors import FlowstateError

__all__ = ["LLMConfigError", "LLMError", "ScriptExhausted", "ToolInputError"]


RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
"""HTTP statuses worth retrying: a timeout, a conflict, rate limiting, an overloaded or
failing server. Any other 4xx is a problem with the request itself."""


class LLMError(FlowstateError):
    """A model call failed. `status_code` is the HTTP status when the API answered with one.

    ``retryable`` is True for the statuses in ``RETRYABLE_STATUSES`` and for calls that got
    no answer at all (connection error, timeout, broken stream)."""

    code = "FS501"

    status_code: int | None
    """HTTP status of the failed response, or None (connection error, malformed body, …)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = status_code is None or status_code in RETRYABLE_STATUSES


class LLMConfigError(LLMError):
    """The LLM layer is set up wrongly; the message says which setting and how to fix it."""

    code = "FS502"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.retryable = False


class ScriptExhausted(LLMError):
    """A `ScriptedLLM` received more requests than it has scripted responses."""

    code = "FS503"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.retryable = False


class ToolInputError(LLMError):
    """Tool-call arguments failed validation against the tool's input schema."""

    code = "FS504"

    tool: str
    """Name of the tool whose input was rejected."""

    def __init__(self, message: str, *, tool: str) -> None:
        super().__init__(message)
        self.tool = tool
        self.retryable = False
