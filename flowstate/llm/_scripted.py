"""`ScriptedLLM`: a deterministic `LLM` that answers from a script, for tests and offline demos.

A script is a list of responses, consumed one per `complete` call, or a function of the
`LLMRequest`. Each response may be an `LLMResponse`, a plain string (a text answer), or a dict::

    {"text": "Let me look that up.",
     "tool_calls": [{"name": "search", "input": {"query": "flowstate"}}],
     "stop_reason": "tool_use",            # optional; derived from tool_calls
     "usage": {"input_tokens": 10, "output_tokens": 5}}   # optional

Tool calls without an `id` get `toolu_scripted_1`, `toolu_scripted_2`, … in the order they are
handed out, so the same script and the same requests always give the same responses.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import LLMConfigError, LLMError, ScriptExhausted
from ._models import (
    CacheMode,
    LLMRequest,
    LLMResponse,
    Message,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
    clean_and_check,
)
from ._protocol import TokenCallback

__all__ = ["SCRIPTED_TOOL_ID_PREFIX", "ScriptFunction", "ScriptItem", "ScriptedLLM"]

SCRIPTED_TOOL_ID_PREFIX = "toolu_scripted_"
"""Prefix of the ids `ScriptedLLM` gives tool calls that were scripted without one."""

ScriptItem: TypeAlias = LLMResponse | str | Mapping[str, Any]
"""One scripted answer: an `LLMResponse`, a text answer, or a dict (see the module docs)."""

ScriptFunction: TypeAlias = Callable[[LLMRequest], ScriptItem | Awaitable[ScriptItem]]
"""A script computed from each request; may be sync or async."""

_ITEM_HELP = (
    'expected an LLMResponse, a string, or a dict like {"text": "...", "tool_calls": '
    '[{"name": "...", "input": {...}}]}'
)


class _ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class _ScriptedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = ""
    tool_calls: list[_ScriptedCall] = Field(default_factory=list)
    stop_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None


class ScriptedLLM:
    """An `LLM` that plays back scripted responses and records what it was asked.

    By default it also rejects conversations the Anthropic API would reject (roles that do not
    alternate, a `tool_use` without its `tool_result`), so agent bugs show up offline too; pass
    `check_conversation=False` to turn that off. `source` names where the script came from in
    error messages (`from_file` sets it to the path).
    """

    model: str
    """Name reported as `LLMResponse.model` and `LLMRequest.model`."""
    requests: list[LLMRequest]
    """Every request received, in order (including one that exhausted the script). A
    conversation that needed no cleaning is recorded as the messages given (not copies)."""

    def __init__(
        self,
        script: Sequence[ScriptItem] | ScriptFunction,
        *,
        model: str = "scripted",
        check_conversation: bool = True,
        source: str | None = None,
    ) -> None:
        self.model = model
        self.requests = []
        self._check = check_conversation
        self._source = source
        self._next_tool_id = 1
        self._function: ScriptFunction | None = None
        self._entries: list[LLMResponse | _ScriptedEntry] = []
        if callable(script):
            self._function = script
        elif isinstance(script, str | Mapping | LLMResponse):
            raise LLMConfigError(
                f"ScriptedLLM takes a list of responses or a function, got a single "
                f"{type(script).__name__}; wrap it in a list: ScriptedLLM([...])"
            )
        else:
            for index, item in enumerate(script):
                self._entries.append(self._parse(item, where=f"script item {index}"))

    @classmethod
    def from_file(cls, path: str | Path, *, model: str = "scripted") -> ScriptedLLM:
        """Load a script from a JSON file holding a list of strings and response dicts."""
        file = Path(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise LLMConfigError(
                f"cannot read the ScriptedLLM script file {str(file)!r}: {exc.strerror}; pass "
                "the path of a JSON file holding a list of responses"
            ) from exc
        except json.JSONDecodeError as exc:
            raise LLMConfigError(
                f"the ScriptedLLM script file {str(file)!r} is not valid JSON: {exc.msg} at "
                f"line {exc.lineno} column {exc.colno}"
            ) from exc
        if not isinstance(data, list):
            kind = {dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(
                type(data), "number"
            )
            raise LLMConfigError(
                f"the ScriptedLLM script file {str(file)!r} holds a JSON {kind}; it must hold a "
                "list of responses, e.g. "
                '["Hello!", {"tool_calls": [{"name": "search", "input": {"q": "x"}}]}]'
            )
        try:
            return cls(data, model=model, source=str(file))
        except LLMConfigError as exc:
            raise LLMConfigError(f"in the ScriptedLLM script file {str(file)!r}: {exc}") from exc

    @property
    def scripted(self) -> int | None:
        """How many responses were scripted, or None for a function script."""
        return None if self._function is not None else len(self._entries)

    @property
    def remaining(self) -> int | None:
        """How many scripted responses are left, or None for a function script."""
        if self._function is not None:
            return None
        return max(len(self._entries) - len(self.requests), 0)

    def __repr__(self) -> str:
        size = "function" if self._function is not None else f"{len(self._entries)} responses"
        return f"ScriptedLLM({size}, requests={len(self.requests)})"

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
        """Record the request and return the next scripted response.

        The conversation is cleaned first (`clean_conversation`), as `AnthropicLLM` does
        before sending, and the cleaned one is recorded and checked.
        """
        cleaned, problems = clean_and_check(messages)
        request = LLMRequest(
            messages=cleaned,
            system=system,
            tools=[ToolSpec.model_validate(t.model_dump()) for t in tools or []],  # a copy
            max_tokens=max_tokens,
            temperature=temperature,
            model=self.model,
            tool_choice=tool_choice,
            stop_sequences=list(stop_sequences or []),
            cache=cache,
        )
        self.requests.append(request)
        number = len(self.requests)
        if self._check:
            if problems:
                listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
                raise LLMError(
                    f"ScriptedLLM rejected request {number} as the Anthropic API would (HTTP "
                    f"400): {listed}",
                    status_code=400,
                )
        if self._function is not None:
            item = self._function(request)
            if inspect.isawaitable(item):
                item = await item
            entry = self._parse(item, where=f"the script function's answer to request {number}")
            # a function script is stateless: number new tool calls after the ones already in
            # the conversation, so the same request always gets the same ids (resumable)
            self._next_tool_id = 1 + sum(
                1
                for m in request.messages
                if not isinstance(m.content, str)
                for b in m.content
                if getattr(b, "type", None) == "tool_use"
            )
        elif number > len(self._entries):
            origin = f" from {self._source}" if self._source else ""
            raise ScriptExhausted(
                f"ScriptedLLM ran out of responses: {len(self._entries)} were scripted{origin} "
                f"and this is request {number}; the last user message was "
                f"{_clip(request.last_user_text)!r}. Add a response for it to the script"
            )
        else:
            entry = self._entries[number - 1]
        response = self._realise(entry)
        if on_token is not None:
            for chunk in _chunks(response.text):
                on_token(chunk)
        return response

    def _parse(self, item: object, *, where: str) -> LLMResponse | _ScriptedEntry:
        if isinstance(item, LLMResponse):
            return item.model_copy(deep=True)
        if isinstance(item, str):
            return _ScriptedEntry(text=item)
        if isinstance(item, Mapping):
            try:
                return _ScriptedEntry.model_validate(item)
            except ValidationError as exc:
                raise LLMConfigError(
                    f"ScriptedLLM {where} is invalid: {_errors(exc)}; {_ITEM_HELP}"
                ) from exc
        raise LLMConfigError(f"ScriptedLLM {where} is a {type(item).__name__}; {_ITEM_HELP}")

    def _realise(self, entry: LLMResponse | _ScriptedEntry) -> LLMResponse:
        if isinstance(entry, LLMResponse):
            response = entry.model_copy(deep=True)
            if response.model is None:
                response.model = self.model
            return response
        calls = [
            ToolCall(id=call.id or self._new_tool_id(), name=call.name, input=dict(call.input))
            for call in entry.tool_calls
        ]
        return LLMResponse(
            text=entry.text,
            tool_calls=calls,
            stop_reason=entry.stop_reason or ("tool_use" if calls else "end_turn"),
            usage=entry.usage.model_copy(),
            model=entry.model or self.model,
        )

    def _new_tool_id(self) -> str:
        tool_id = f"{SCRIPTED_TOOL_ID_PREFIX}{self._next_tool_id}"
        self._next_tool_id += 1
        return tool_id


def _errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"]) or "(item)"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)


def _chunks(text: str) -> list[str]:
    """Split text into word-sized deltas (each word with its trailing whitespace)."""
    return re.findall(r"\s*\S+\s*|\s+", text)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
