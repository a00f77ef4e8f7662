"""`AnthropicLLM`: the `LLM` protocol on top of the official `anthropic` SDK.

Retries (429, 5xx, 529 overloaded, connection errors) and timeouts are the SDK's own: we pass
`max_retries` and `timeout` through rather than wrapping calls in a second retry loop, so the
SDK's backoff and its `retry-after` handling stay in charge.

Sampling parameters: anthropic SDK 2.x speaks API version 2026-10-21, which removed
`temperature` (the API answers 400 even for 1.0) and dropped it from `messages.create`. So a
`temperature` is refused up front with `LLMConfigError` rather than silently ignored, unless the
client was built for the older API version (`default_headers={"anthropic-version":
"2023-06-01"}`), in which case it is sent through `extra_body` as the SDK's migration guide says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import anthropic
from pydantic import ValidationError

from ._errors import LLMConfigError, LLMError
from ._models import (
    CacheMode,
    ContentBlock,
    LLMResponse,
    Message,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Usage,
    clean_conversation,
)
from ._protocol import TokenCallback

__all__ = ["DEFAULT_ANTHROPIC_MODEL", "AnthropicLLM"]

DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-5"
"""Model used by `AnthropicLLM()` and by the `--llm anthropic` spec when none is named."""

_API_KEY_ENV = "ANTHROPIC_API_KEY"
_SAMPLING_REMOVED_IN = "2026-10-21"  # first anthropic-version without temperature/top_p/top_k

# What the SDK's stream accumulator raises when events arrive out of order or unparseable
# (it asserts on a stream without `message_start`).
_BROKEN_STREAM = (AssertionError, ValueError, RuntimeError, TypeError, KeyError, IndexError)

_STATUS_HINTS: Mapping[int, str] = {
    400: "the API rejected the request; check that roles alternate user/assistant, that every "
    "tool_use is answered by a tool_result in the next user message, and the tool schemas",
    401: f"authentication failed; check {_API_KEY_ENV} (or the api_key argument)",
    403: "the API key may not use this model or feature; check the key's workspace permissions",
    404: "unknown model or endpoint; check the model name and base_url",
    413: "the request is too large; shorten the conversation or tool outputs",
    429: "rate limited{retried}; slow down, raise max_retries, or raise your limits",
    529: "the API is overloaded{retried}; retry later or raise max_retries",
}

MAX_CACHE_BREAKPOINTS = 4
"""The Messages API refuses a request with more `cache_control` blocks than this."""
_EPHEMERAL: dict[str, Any] = {"type": "ephemeral"}


# HTTP status matching an error `type`, for errors that arrive inside a 200 event stream.
_ERROR_TYPE_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicLLM:
    """An `LLM` backed by Anthropic's Messages API with native tool use.

    The API key comes from `api_key`, else the `ANTHROPIC_API_KEY` environment variable, unless
    a ready `client` is passed. `max_retries` and `timeout` are handed to the SDK (with a given
    client, through `client.with_options`), which does the retrying.
    """

    model: str
    """Model name sent with every request."""
    max_retries: int
    """How many times the SDK retries a retryable failure before we raise `LLMError`."""
    timeout: float
    """Per-request timeout in seconds, enforced by the SDK."""
    thinking: int | Literal["adaptive"] | None
    """Extended thinking: a budget of thinking tokens (at least 1024, added on top of each
    call's `max_tokens`), `"adaptive"` (the model decides), or None (off). With it on, the
    API refuses a forced `tool_choice`, so callers that need a tool use auto and check."""

    def __init__(
        self,
        model: str = DEFAULT_ANTHROPIC_MODEL,
        *,
        client: anthropic.AsyncAnthropic | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float = 60.0,
        thinking: int | Literal["adaptive"] | None = None,
    ) -> None:
        if not model:
            raise LLMConfigError(
                f"AnthropicLLM needs a model name, e.g. AnthropicLLM({DEFAULT_ANTHROPIC_MODEL!r})"
            )
        if thinking is not None and thinking != "adaptive":
            if isinstance(thinking, bool) or not isinstance(thinking, int) or thinking < 1024:
                raise LLMConfigError(
                    f"AnthropicLLM(thinking={thinking!r}): give a thinking budget of at least "
                    "1024 tokens (thinking=2048), 'adaptive', or None to turn thinking off"
                )
        self.model = model
        self.max_retries = max_retries
        self.timeout = timeout
        self.thinking = thinking
        if client is not None:
            if api_key is not None or base_url is not None:
                raise LLMConfigError(
                    "AnthropicLLM got client= together with api_key=/base_url=; the client "
                    "already carries its key and URL, so pass one or the other"
                )
            self._client = client.with_options(max_retries=max_retries, timeout=timeout)
            self._owns_client = False
            return
        key = api_key or os.environ.get(_API_KEY_ENV)
        if not key:
            raise LLMConfigError(
                f"AnthropicLLM needs an API key: set the {_API_KEY_ENV} environment variable "
                f"(export {_API_KEY_ENV}=sk-ant-...), pass api_key=..., or pass a configured "
                "client=anthropic.AsyncAnthropic(...). To run offline without a key, use "
                "ScriptedLLM: ScriptedLLM([...]) in code, or --llm scripted:FILE on the command "
                "line, where FILE is a JSON list of responses"
            )
        self._client = anthropic.AsyncAnthropic(
            api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self._owns_client = True

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client requests go through."""
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connections of a client this object created (a given one is yours)."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> AnthropicLLM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AnthropicLLM(model={self.model!r}, base_url={str(self._client.base_url)!r})"

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
        """Call `messages.create` (or `messages.stream` when `on_token` is given).

        The conversation is sent through `clean_conversation`, so a stored turn the API would
        refuse (a whitespace-only text block, say) never causes a 400. With `cache="auto"`
        the system prompt, the tools and the conversation so far carry `cache_control`
        breakpoints (at most `MAX_CACHE_BREAKPOINTS`).
        """
        params = self._params(
            messages, system, tools, max_tokens, tool_choice, stop_sequences, cache
        )
        if temperature is not None:
            params["extra_body"] = {"temperature": self._checked_temperature(temperature)}
        try:
            if on_token is None:
                try:
                    message: object = await self._client.messages.create(**params)
                except ValueError as exc:  # the body claimed to be JSON but was not
                    raise self._malformed(f"the body is not valid JSON ({exc})") from exc
            else:
                message = await self._stream(params, on_token)
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc) from exc
        except anthropic.APITimeoutError as exc:
            raise LLMError(
                f"the Anthropic API at {self._base_url} did not answer within {self.timeout}s "
                f"(model {self.model!r}, {self.max_retries} retries); raise timeout= (a large "
                "max_tokens needs more time), or check the network"
            ) from exc
        except anthropic.APIConnectionError as exc:
            raise LLMError(
                f"could not connect to the Anthropic API at {self._base_url} (model "
                f"{self.model!r}, {self.max_retries} retries): {exc}; check the network and "
                "base_url"
            ) from exc
        except anthropic.APIResponseValidationError as exc:
            raise self._malformed(str(exc), status_code=exc.status_code) from exc
        except anthropic.APIError as exc:
            raise LLMError(
                f"the Anthropic API call failed (model {self.model!r}): {exc.message}"
            ) from exc
        return self._to_response(message)

    def _params(
        self,
        messages: list[Message],
        system: str | None,
        tools: list[ToolSpec] | None,
        max_tokens: int,
        tool_choice: ToolChoice | None,
        stop_sequences: list[str] | None,
        cache: CacheMode,
    ) -> dict[str, Any]:
        caching = cache == "auto"
        sent = [_message_param(m) for m in clean_conversation(messages)]
        params: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "messages": sent}
        if system is not None:
            if caching and system.strip():
                params["system"] = [{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
            else:
                params["system"] = system
        if tools:
            params["tools"] = [_tool_param(t) for t in tools]
            if caching:
                params["tools"][-1]["cache_control"] = _EPHEMERAL
        if caching:
            _mark_conversation(sent, MAX_CACHE_BREAKPOINTS - _count_marks(params))
        if tool_choice is not None:
            if tool_choice.forced and self.thinking is not None:
                raise LLMConfigError(
                    f"AnthropicLLM(model {self.model!r}) has extended thinking on, and the API "
                    f"refuses tool_choice {tool_choice.type!r} (forced tool use) with thinking: "
                    "pass tool_choice=ToolChoice(type='auto') and check the answer, or turn "
                    "thinking off"
                )
            params["tool_choice"] = tool_choice.model_dump(exclude_none=True)
        if stop_sequences:
            params["stop_sequences"] = list(stop_sequences)
        if self.thinking == "adaptive":
            params["thinking"] = {"type": "adaptive"}
        elif self.thinking is not None:
            params["thinking"] = {"type": "enabled", "budget_tokens": self.thinking}
            params["max_tokens"] = max_tokens + self.thinking
        return params

    async def _stream(self, params: dict[str, Any], on_token: TokenCallback) -> object:
        async with self._client.messages.stream(**params) as stream:
            deltas = stream.text_stream
            while True:
                try:
                    delta = await anext(deltas)
                except StopAsyncIteration:
                    break
                except _BROKEN_STREAM as exc:
                    raise self._malformed(f"the event stream is broken ({exc!r})") from exc
                # Outside the try: an exception from the caller's callback is theirs, unwrapped.
                on_token(delta)
            try:
                return await stream.get_final_message()
            except _BROKEN_STREAM as exc:
                raise self._malformed(f"the event stream is incomplete ({exc!r})") from exc

    def _checked_temperature(self, temperature: float) -> float:
        version = str(self._client.default_headers.get("anthropic-version", ""))
        if version >= _SAMPLING_REMOVED_IN:
            raise LLMConfigError(
                f"AnthropicLLM cannot send temperature={temperature}: anthropic-version {version} "
                "(anthropic SDK 2.x) removed sampling parameters and the API rejects them with "
                "400. Call complete() without temperature; only for an older model that still "
                "honours it, pass client=anthropic.AsyncAnthropic(default_headers="
                "{'anthropic-version': '2023-06-01'}, ...)"
            )
        return temperature

    @property
    def _base_url(self) -> str:
        return str(self._client.base_url)

    def _status_error(self, exc: anthropic.APIStatusError) -> LLMError:
        status = exc.status_code
        detail = exc.api_message or exc.message
        kind = f" ({exc.type})" if exc.type else ""
        if status < 400:  # an `error` event inside a stream that had started with 200
            status = _ERROR_TYPE_STATUS.get(exc.type or "", 500)
            return LLMError(
                f"the Anthropic API stream for model {self.model!r} failed midway with "
                f"{exc.type or 'an error'}: {detail}; the SDK does not retry a stream that has "
                "started, so retry the call",
                status_code=status,
            )
        retried = (
            f" even after {self.max_retries} retries"
            if self.max_retries
            else " (no retry was made: max_retries=0)"
        )
        hint = _STATUS_HINTS.get(status)
        if hint is None and status >= 500:
            hint = "the API failed{retried}; retry later or raise max_retries"
        if hint:
            hint = hint.format(retried=retried)
        text = f"Anthropic API error {status}{kind} for model {self.model!r}: {detail}"
        if hint:
            text += f"; {hint}"
        if exc.request_id:
            text += f" (request id {exc.request_id})"
        return LLMError(text, status_code=status)

    def _malformed(self, detail: str, *, status_code: int | None = None) -> LLMError:
        return LLMError(
            f"malformed response from the Anthropic API at {self._base_url} (model "
            f"{self.model!r}): {detail}; this is a provider or proxy fault, not your request: "
            "retry, and check that base_url points at a Messages API endpoint",
            status_code=status_code,
        )

    def _to_response(self, message: object) -> LLMResponse:
        try:
            return _response_from_sdk(message)
        except ValidationError as exc:
            problems = "; ".join(
                f"{e['loc'][0] if e['loc'] else 'value'}: {e['msg']} (got {e['input']!r:.60})"
                for e in exc.errors(include_url=False)
            )
            raise self._malformed(f"{exc.title} is invalid: {problems}") from exc
        except (ValueError, TypeError, AttributeError) as exc:
            raise self._malformed(str(exc)) from exc


def _message_param(message: Message) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    return {"role": message.role, "content": [_block_param(b) for b in message.content]}


def _count_marks(params: dict[str, Any]) -> int:
    system = params.get("system")
    marks = sum(1 for b in system if "cache_control" in b) if isinstance(system, list) else 0
    return marks + sum(1 for t in params.get("tools", ()) if "cache_control" in t)


def _mark_conversation(messages: list[dict[str, Any]], room: int) -> None:
    """Put cache breakpoints on the conversation: on its last block (the whole prefix, read
    back by the next call of a growing conversation) and on the user turn before it (still a
    hit when the last turn added more blocks than the API looks back over). Thinking blocks
    cannot carry a breakpoint; a string content becomes one text block to carry it."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    targets = [len(messages) - 1]
    if len(users) >= 2 and users[-2] != targets[0]:
        targets.append(users[-2])
    for index in targets[: max(room, 0)]:
        message: dict[str, Any] = messages[index]
        if isinstance(message["content"], str):
            message["content"] = [{"type": "text", "text": message["content"]}]
        blocks: list[dict[str, Any]] = message["content"]
        for block in reversed(blocks):
            if block["type"] not in ("thinking", "redacted_thinking"):
                block["cache_control"] = _EPHEMERAL
                break


def _block_param(block: ContentBlock) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if isinstance(block, ThinkingBlock):
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if isinstance(block, RedactedThinkingBlock):
        return {"type": "redacted_thinking", "data": block.data}
    assert isinstance(block, ToolResultBlock)
    return {
        "type": "tool_result",
        "tool_use_id": block.tool_use_id,
        "content": block.content,
        "is_error": block.is_error,
    }


def _tool_param(spec: ToolSpec) -> dict[str, Any]:
    param: dict[str, Any] = {"name": spec.name, "input_schema": spec.input_schema}
    if spec.description:
        param["description"] = spec.description
    return param


def _get(obj: object, name: str) -> Any:
    """A field of an SDK object; with lax parsing, unknown shapes may arrive as plain dicts."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _response_from_sdk(message: object) -> LLMResponse:
    if isinstance(message, str):
        raise ValueError(f"expected a JSON message object, got text {message[:200]!r}")
    raw_content = _get(message, "content")
    if not isinstance(raw_content, list):
        raise ValueError(f"`content` should be a list of blocks, got {type(raw_content).__name__}")
    blocks: list[ContentBlock] = []
    for raw in raw_content:
        kind = _get(raw, "type")
        if kind == "text":
            blocks.append(TextBlock(text=_get(raw, "text")))
        elif kind == "tool_use":
            blocks.append(
                ToolUseBlock(id=_get(raw, "id"), name=_get(raw, "name"), input=_get(raw, "input"))
            )
        elif kind == "thinking":
            blocks.append(
                ThinkingBlock(thinking=_get(raw, "thinking"), signature=_get(raw, "signature"))
            )
        elif kind == "redacted_thinking":
            blocks.append(RedactedThinkingBlock(data=_get(raw, "data")))
        elif kind == "tool_result":
            raise ValueError("the assistant turn contains a tool_result block")
        # Other kinds (server-side tool blocks) only appear when a request enables those
        # features, which this class never does; they are skipped, not guessed at.
    raw_usage = _get(message, "usage")
    if raw_usage is None:
        raise ValueError("`usage` is missing")
    usage = Usage(
        input_tokens=_get(raw_usage, "input_tokens"),
        output_tokens=_get(raw_usage, "output_tokens"),
        cache_creation_input_tokens=_get(raw_usage, "cache_creation_input_tokens") or 0,
        cache_read_input_tokens=_get(raw_usage, "cache_read_input_tokens") or 0,
    )
    stop_reason = _get(message, "stop_reason")
    model = _get(message, "model")
    return LLMResponse(
        content=blocks,
        stop_reason=stop_reason if isinstance(stop_reason, str) else None,
        usage=usage,
        model=model if isinstance(model, str) else None,
    )
