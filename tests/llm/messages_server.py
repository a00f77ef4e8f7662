"""A local HTTP server that speaks enough of the Anthropic Messages API to test the real SDK.

It listens on 127.0.0.1 (an ephemeral port) in a background thread. Tests queue replies, point
`anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test-key")` at it, and inspect
`server.requests` afterwards. Every POST /v1/messages is checked the way the real API checks it
(API key and version headers, body fields, alternating roles, tool_use/tool_result pairing,
tool definitions); an invalid request gets a 400 in Anthropic's error format, so a client bug
fails loudly here instead of in production.

    server.reply(message(text("Hello"), usage=(12, 3)))
    server.reply(overloaded(), message(text("ok")))        # 529 once, then success
    server.reply(malformed())                              # a body that is not a Message
    server.reply(message(thinking("Let me add."), tool_use("add", {"a": 1})))

A queued `message(...)` is sent as JSON, or as server-sent events when the request has
`"stream": true`. Before it is sent, the server does what the real API does to an answer:
it signs thinking blocks (and fills redacted ones), cuts the text at the first of the
request's `stop_sequences` (`stop_reason` `stop_sequence`), and, when the request carries
`cache_control` breakpoints, reports prompt-cache usage from its own cache of prefixes
(`cache_creation_input_tokens`, `cache_read_input_tokens`; prompt tokens estimated as one per
four characters of JSON, looking back up to 20 blocks from each breakpoint, like the API).

Rules enforced beyond the basic shape (each a 400 as from the API): no empty or
whitespace-only text block; roles alternate, starting with user; tool_result blocks come
first in their user message, answer each tool_use of the previous message exactly once, and
nothing else; a final assistant message does not end with whitespace; at most 4
`cache_control` breakpoints, none on a thinking block; `tool_choice` is well formed and
names an offered tool; with thinking on, `tool_choice` does not force tool use, and in a
tool-use loop the assistant turn starts with its thinking block, whose signature must be the
one the server gave.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "MessagesServer",
    "Recorded",
    "Reply",
    "api_key_of",
    "error",
    "malformed",
    "message",
    "overloaded",
    "redacted_thinking",
    "text",
    "thinking",
    "tool_use",
]

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOP_LEVEL = {
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "top_k",
    "top_p",
    "stop_sequences",
    "stream",
    "metadata",
    "thinking",
    "service_tier",
}
_ids = itertools.count(1)

_SECRET = b"messages-server-signing-key"
MAX_CACHE_BREAKPOINTS = 4
CACHE_LOOKBACK = 20
"""How many blocks before a breakpoint the API checks for an earlier cache hit."""

SAMPLING_REMOVED_IN = "2026-10-21"
"""From this anthropic-version on, the API refuses temperature/top_p/top_k (even at defaults)."""


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: Any
    """Parsed JSON body, or None if it was not JSON."""


@dataclass
class Reply:
    """A queued answer: a JSON body (message or error), or raw bytes for malformed replies."""

    status: int = 200
    body: dict[str, Any] | None = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (for timeout tests)."""

    @property
    def is_message(self) -> bool:
        return self.status == 200 and self.body is not None and self.body.get("type") == "message"


# --- reply builders -------------------------------------------------------------------------


def text(value: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": value}


def tool_use(name: str, input: Mapping[str, Any], id: str | None = None) -> dict[str, Any]:
    """A tool_use content block (a fresh `toolu_test_N` id unless given)."""
    return {
        "type": "tool_use",
        "id": id or f"toolu_test_{next(_ids)}",
        "name": name,
        "input": dict(input),
    }


def thinking(value: str) -> dict[str, Any]:
    """A thinking block; the server signs it when it sends the answer."""
    return {"type": "thinking", "thinking": value}


def redacted_thinking() -> dict[str, Any]:
    """A redacted_thinking block; the server fills in its (signed) opaque data."""
    return {"type": "redacted_thinking"}


def sign(value: str) -> str:
    """The signature the server gives a thinking block with this text."""
    return base64.b64encode(hmac.new(_SECRET, value.encode(), hashlib.sha256).digest()).decode()


def _redacted_data() -> str:
    nonce = f"redacted-{next(_ids)}"
    return f"{nonce}.{sign(nonce)}"


def _valid_redacted(data: Any) -> bool:
    if not isinstance(data, str) or "." not in data:
        return False
    nonce, _, sig = data.partition(".")
    return hmac.compare_digest(sig, sign(nonce))


def message(
    *content: dict[str, Any],
    stop_reason: str | None = None,
    usage: tuple[int, int] = (10, 5),
    model: str = "claude-test",
    delay: float = 0.0,
) -> Reply:
    """A successful Messages API answer; stop_reason defaults from the content."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return Reply(
        body={
            "id": f"msg_test_{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": list(content),
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        },
        delay=delay,
    )


def error(status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None) -> Reply:
    """An error in Anthropic's format: {"type": "error", "error": {"type", "message"}}."""
    return Reply(
        status=status,
        body={"type": "error", "error": {"type": kind, "message": detail}},
        headers=dict(headers or {}),
    )


def overloaded() -> Reply:
    """529 overloaded_error, with a 1 ms retry-after so the SDK's retry is quick."""
    return error(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "1"})


def malformed(raw: bytes = b'{"type": "message", "content": "not a list"}') -> Reply:
    """A 200 whose body is not a valid Message (by default `content` is a string)."""
    return Reply(raw=raw)


# --- request validation ---------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, status: int, kind: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.kind = kind
        self.text = text


def _bad(text: str) -> _Invalid:
    return _Invalid(400, "invalid_request_error", text)


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries.

    Older SDKs send `x-api-key`; anthropic 2.x sends `Authorization: Bearer <key>`. Both are
    accepted, as by the real API.
    """
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def validate(headers: Mapping[str, str], body: Any) -> None:
    """Raise `_Invalid` for a request the real Messages API would refuse."""
    if not api_key_of(headers):
        raise _Invalid(
            401, "authentication_error", "an x-api-key or Authorization: Bearer header is required"
        )
    if not _VERSION.match(headers.get("anthropic-version", "")):
        raise _bad("anthropic-version header is required (e.g. 2023-06-01)")
    if not headers.get("content-type", "").startswith("application/json"):
        raise _bad("content-type must be application/json")
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    unknown = sorted(set(body) - _TOP_LEVEL)
    if unknown:
        raise _bad(f"{unknown[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("model: Field required")
    max_tokens = body.get("max_tokens")
    if type(max_tokens) is not int or max_tokens < 1:
        raise _bad("max_tokens: must be a positive integer")
    sampling = sorted({"temperature", "top_p", "top_k"} & set(body))
    if sampling and headers["anthropic-version"] >= SAMPLING_REMOVED_IN:
        raise _bad(f"{sampling[0]}: Extra inputs are not permitted")
    if "temperature" in body:
        t = body["temperature"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= 1:
            raise _bad("temperature: must be a number between 0 and 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("stream: must be a boolean")
    if "system" in body:
        _validate_system(body["system"])
    if "tools" in body:
        _validate_tools(body["tools"])
    thinking_on = _validate_thinking(body)
    _validate_tool_choice(body, thinking_on)
    _validate_stop_sequences(body.get("stop_sequences"))
    _validate_messages(body.get("messages"))
    _validate_cache_control(body)
    if thinking_on:
        _validate_thinking_turns(body["messages"])


def _validate_thinking(body: dict[str, Any]) -> bool:
    config = body.get("thinking")
    if config is None:
        return False
    if not isinstance(config, dict) or config.get("type") not in (
        "enabled",
        "adaptive",
        "disabled",
    ):
        raise _bad("thinking: must be {'type': 'enabled', 'budget_tokens': N} or adaptive")
    if config["type"] == "disabled":
        return False
    if config["type"] == "enabled":
        budget = config.get("budget_tokens")
        if type(budget) is not int or budget < 1024:
            raise _bad(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if budget >= body["max_tokens"]:
            raise _bad("`max_tokens` must be greater than `thinking.budget_tokens`")
    return True


def _validate_tool_choice(body: dict[str, Any], thinking_on: bool) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise _bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    names = {t["name"] for t in body.get("tools", [])}
    if choice["type"] == "tool":
        _fields(
            choice, "tool_choice", required={"type", "name"}, optional={"disable_parallel_tool_use"}
        )
        if choice["name"] not in names:
            raise _bad(f"tool_choice.name: no tool named {choice['name']!r} was provided")
    if choice["type"] in ("any", "tool") and not names:
        raise _bad("tool_choice: a tool must be provided when tool_choice forces tool use")
    if thinking_on and choice["type"] in ("any", "tool"):
        raise _bad(
            "Thinking may not be enabled when tool_choice forces tool use. Use tool_choice "
            "auto or none with thinking."
        )


def _validate_stop_sequences(stops: Any) -> None:
    if stops is None:
        return
    if not isinstance(stops, list) or not all(isinstance(x, str) for x in stops):
        raise _bad("stop_sequences: Input should be a valid list of strings")
    for i, stop in enumerate(stops):
        if not stop.strip():
            raise _bad(f"stop_sequences.{i}: each stop sequence must contain non-whitespace")


def _cache_marked(body: dict[str, Any]) -> list[dict[str, Any]]:
    marked: list[dict[str, Any]] = [t for t in body.get("tools", []) if "cache_control" in t]
    system = body.get("system")
    if isinstance(system, list):
        marked += [b for b in system if "cache_control" in b]
    for m in body["messages"]:
        if isinstance(m["content"], list):
            marked += [b for b in m["content"] if "cache_control" in b]
    return marked


def _validate_cache_control(body: dict[str, Any]) -> None:
    marked = _cache_marked(body)
    for block in marked:
        control = block["cache_control"]
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            raise _bad("cache_control.type: Input should be 'ephemeral'")
        if block.get("type") in ("thinking", "redacted_thinking"):
            raise _bad("cache_control cannot be set on thinking or redacted_thinking blocks")
    if len(marked) > MAX_CACHE_BREAKPOINTS:
        raise _bad(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marked)}."
        )


def _validate_thinking_turns(messages: list[dict[str, Any]]) -> None:
    """With thinking on, a tool-use loop's assistant turn must start with its thinking."""
    last = messages[-1]
    if last["role"] != "user" or len(messages) < 2 or not isinstance(last["content"], list):
        return
    if not any(b.get("type") == "tool_result" for b in last["content"]):
        return
    turn = messages[-2]["content"]
    first = turn[0] if isinstance(turn, list) and turn else {"type": "text"}
    if first.get("type") not in ("thinking", "redacted_thinking"):
        raise _bad(
            f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or "
            f"`redacted_thinking`, but found `{first.get('type')}`. When `thinking` is "
            "enabled, a final `assistant` message must start with a thinking block (preceeding "
            "the lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
            "include thinking blocks from previous turns."
        )


def _validate_system(system: Any) -> None:
    if isinstance(system, str):
        return
    if not isinstance(system, list) or not all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        raise _bad("system: must be a string or a list of text blocks")
    for i, b in enumerate(system):
        _fields(b, f"system.{i}", required={"type", "text"}, optional={"cache_control"})
        if not b["text"].strip():
            raise _bad(f"system.{i}.text: text content blocks must contain non-whitespace text")


def _validate_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise _bad("tools: must be a list")
    names: set[str] = set()
    for i, t in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(t, dict):
            raise _bad(f"{where}: must be an object")
        extra = sorted(set(t) - {"name", "description", "input_schema", "type", "cache_control"})
        if extra:
            raise _bad(f"{where}.{extra[0]}: Extra inputs are not permitted")
        if not isinstance(t.get("name"), str) or not _TOOL_NAME.match(t["name"]):
            raise _bad(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if t["name"] in names:
            raise _bad(f"tools: Tool names must be unique ({t['name']!r})")
        names.add(t["name"])
        if "description" in t and not isinstance(t["description"], str):
            raise _bad(f"{where}.description: must be a string")
        schema = t.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise _bad(f"{where}.input_schema: must be a JSON schema with type 'object'")


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: at least one message is required")
    previous_tool_ids: set[str] = set()
    previous_role: str | None = None
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise _bad(f"{where}: must be an object with exactly 'role' and 'content'")
        role = m["role"]
        if role not in ("user", "assistant"):
            raise _bad(f"{where}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise _bad('messages: first message must use the "user" role')
        if role == previous_role:
            raise _bad(
                f'messages: roles must alternate between "user" and "assistant" '
                f"(messages.{i - 1} and {where} are both {role!r})"
            )
        content = m["content"]
        last = i == len(messages) - 1
        blocks = _validate_content(content, where, role, allow_empty=last and role == "assistant")
        if last and role == "assistant" and blocks and blocks[-1]["type"] == "text":
            if blocks[-1]["text"] != blocks[-1]["text"].rstrip():
                raise _bad("final assistant content cannot end with trailing whitespace")
        seen_results: set[str] = set()
        for j, b in enumerate(blocks):
            if b["type"] != "tool_result":
                continue
            if any(x["type"] != "tool_result" for x in blocks[:j]):
                raise _bad(
                    f"{where}.content.{j}: tool_result blocks must come first in the content "
                    "of a user message, before any other block"
                )
            if b["tool_use_id"] in seen_results:
                raise _bad(f"{where}.content.{j}: duplicate tool_result for {b['tool_use_id']}")
            seen_results.add(b["tool_use_id"])
        if previous_tool_ids:
            answered = {b["tool_use_id"] for b in blocks if b["type"] == "tool_result"}
            missing = sorted(previous_tool_ids - answered)
            if missing:
                raise _bad(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
        for b in blocks:
            if b["type"] == "tool_result" and b["tool_use_id"] not in previous_tool_ids:
                raise _bad(
                    f"{where}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{b['tool_use_id']}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
        previous_tool_ids = {b["id"] for b in blocks if b["type"] == "tool_use"}
        previous_role = role


def _validate_content(
    content: Any, where: str, role: str, *, allow_empty: bool
) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content and not allow_empty:
            raise _bad(f"{where}: all messages must have non-empty content")
        if content and not content.strip():
            raise _bad(f"{where}: text content blocks must contain non-whitespace text")
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"{where}.content: must be a string or a list of blocks")
    if not content and not allow_empty:
        raise _bad(f"{where}: all messages must have non-empty content")
    for j, b in enumerate(content):
        bw = f"{where}.content.{j}"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            _fields(b, bw, required={"type", "text"}, optional={"cache_control", "citations"})
            if not isinstance(b["text"], str) or not b["text"]:
                raise _bad(f"{bw}.text: text content blocks must be non-empty")
            if not b["text"].strip():
                raise _bad(f"{bw}.text: text content blocks must contain non-whitespace text")
        elif kind in ("thinking", "redacted_thinking"):
            if role != "assistant":
                raise _bad(f"{bw}: {kind} blocks are only allowed in assistant messages")
            if kind == "thinking":
                _fields(
                    b, bw, required={"type", "thinking", "signature"}, optional={"cache_control"}
                )
                if not hmac.compare_digest(str(b["signature"]), sign(str(b["thinking"]))):
                    raise _bad(f"{bw}: Invalid `signature` in `thinking` block")
            else:
                _fields(b, bw, required={"type", "data"}, optional={"cache_control"})
                if not _valid_redacted(b["data"]):
                    raise _bad(f"{bw}: Invalid `data` in `redacted_thinking` block")
        elif kind == "tool_use":
            if role != "assistant":
                raise _bad(f"{bw}: tool_use blocks are only allowed in assistant messages")
            _fields(b, bw, required={"type", "id", "name", "input"}, optional={"cache_control"})
            if not isinstance(b["input"], dict):
                raise _bad(f"{bw}.input: Input should be a valid dictionary")
        elif kind == "tool_result":
            if role != "user":
                raise _bad(f"{bw}: tool_result blocks are only allowed in user messages")
            _fields(
                b,
                bw,
                required={"type", "tool_use_id"},
                optional={"content", "is_error", "cache_control"},
            )
            if "is_error" in b and not isinstance(b["is_error"], bool):
                raise _bad(f"{bw}.is_error: Input should be a valid boolean")
            if "content" in b and not isinstance(b["content"], str | list):
                raise _bad(f"{bw}.content: must be a string or a list of blocks")
        else:
            raise _bad(f"{bw}.type: unknown content block type {kind!r}")
    return content


def _fields(block: dict[str, Any], where: str, *, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - set(block))
    if missing:
        raise _bad(f"{where}.{missing[0]}: Field required")
    extra = sorted(set(block) - required - optional)
    if extra:
        raise _bad(f"{where}.{extra[0]}: Extra inputs are not permitted")


# --- what the API does to an answer ----------------------------------------------------------


def _cut_at_stop(msg: dict[str, Any], stops: list[str]) -> None:
    """Cut the answer at the first stop sequence the text contains (dropping what follows)."""
    if not stops:
        return
    for index, block in enumerate(msg["content"]):
        if block["type"] != "text":
            continue
        hits = [(block["text"].find(s), s) for s in stops if s in block["text"]]
        if hits:
            at, stop = min(hits)
            block["text"] = block["text"][:at]
            msg["content"] = [b for b in msg["content"][: index + 1] if b is not block or at]
            msg["stop_reason"] = "stop_sequence"
            msg["stop_sequence"] = stop
            return


def _tokens(item: Any) -> int:
    return max(1, len(json.dumps(item, sort_keys=True)) // 4)


def _cache_usage(request: dict[str, Any], cache: dict[str, int]) -> dict[str, int]:
    """Prompt-cache accounting of a request with breakpoints; updates `cache`."""
    items: list[tuple[Any, bool]] = []
    for t in request.get("tools", []):
        items.append(({k: v for k, v in t.items() if k != "cache_control"}, "cache_control" in t))
    system = request.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system or []
    for b in blocks:
        items.append(({k: v for k, v in b.items() if k != "cache_control"}, "cache_control" in b))
    for m in request["messages"]:
        content = m["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for b in parts:
            clean = {k: v for k, v in b.items() if k != "cache_control"}
            items.append(({"role": m["role"], **clean}, "cache_control" in b))
    digest = hashlib.sha256(str(request["model"]).encode())
    hashes: list[str] = []
    sizes: list[int] = []
    total = 0
    for item, _ in items:
        digest.update(json.dumps(item, sort_keys=True).encode())
        hashes.append(digest.copy().hexdigest())
        total += _tokens(item)
        sizes.append(total)
    marks = [i for i, (_, marked) in enumerate(items) if marked]
    read = 0
    for mark in marks:
        for k in range(mark, max(mark - CACHE_LOOKBACK, -1), -1):
            if hashes[k] in cache:
                read = max(read, sizes[k])
                break
    written = max(sizes[marks[-1]] - read, 0) if marks else 0
    for mark in marks:
        cache[hashes[mark]] = sizes[mark]
    return {
        "input_tokens": total - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


# --- server-sent events ---------------------------------------------------------------------


def sse_events(msg: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The event sequence the real API streams for `msg`."""
    start = {
        **msg,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**msg["usage"], "output_tokens": 1},
    }
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(msg["content"]):
        if block["type"] == "text":
            empty = {"type": "text", "text": ""}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
            for piece in re.findall(r"\s*\S+\s*|\s+", block["text"]):
                delta = {"type": "text_delta", "text": piece}
                yield (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
        elif block["type"] == "thinking":
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
            for piece in re.findall(r"\s*\S+\s*|\s+", block["thinking"]):
                delta = {"type": "thinking_delta", "thinking": piece}
                yield (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            delta = {"type": "signature_delta", "signature": block["signature"]}
            yield (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        elif block["type"] == "redacted_thinking":
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": dict(block)},
            )
        else:
            head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": head},
            )
            encoded = json.dumps(block["input"])
            for k in range(0, len(encoded), 7):
                delta = {"type": "input_json_delta", "partial_json": encoded[k : k + 7]}
                yield (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": msg["usage"]["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


# --- the server -----------------------------------------------------------------------------


class MessagesServer:
    """The Messages API on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._cache: dict[str, int] = {}
        """Prompt-cache: prefix hash -> its estimated tokens."""
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MessagesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> MessagesServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="messages-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    @property
    def base_url(self) -> str:
        """URL to pass as the SDK's base_url."""
        assert self._httpd is not None, "MessagesServer is not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Replies queued but not yet sent."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget recorded requests and queued replies."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self._cache.clear()

    @property
    def bodies(self) -> list[Any]:
        """JSON bodies of the recorded requests, in order."""
        with self._lock:
            return [r.body for r in self.requests]

    def answer(self, request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        """The queued answer as the API would send it for `request` (see the module doc)."""
        out = copy.deepcopy(reply)
        for block in out["content"]:
            if block["type"] == "thinking" and "signature" not in block:
                block["signature"] = sign(block["thinking"])
            elif block["type"] == "redacted_thinking" and "data" not in block:
                block["data"] = _redacted_data()
        _cut_at_stop(out, request.get("stop_sequences") or [])
        if _cache_marked(request):
            with self._lock:
                out["usage"] = {**out["usage"], **_cache_usage(request, self._cache)}
        return out

    def _take(self, recorded: Recorded) -> Reply | None:
        with self._lock:
            self.requests.append(recorded)
            return self._queue.popleft() if self._queue else None


class _Handler(BaseHTTPRequestHandler):
    server_owner: MessagesServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = Recorded(method="POST", path=self.path, headers=headers, body=body)
        if self.path.split("?")[0] != "/v1/messages":
            self.server_owner._take(recorded)
            self._send(error(404, "not_found_error", f"no route for POST {self.path}"))
            return
        try:
            validate(headers, body)
        except _Invalid as exc:
            self.server_owner._take(recorded)
            self._send(error(exc.status, exc.kind, exc.text))
            return
        reply = self.server_owner._take(recorded)
        if reply is None:
            self._send(
                error(
                    500,
                    "api_error",
                    "messages_server: no reply queued for this "
                    "request; call server.reply(...) first",
                    {"x-should-retry": "false"},
                )
            )
            return
        if reply.delay:
            time.sleep(reply.delay)
        if reply.is_message:
            assert reply.body is not None
            answer = self.server_owner.answer(body, reply.body)
            if body.get("stream") is True:
                self._send_stream(answer)
            else:
                self._send(Reply(body=answer, headers=reply.headers))
        else:
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", f"req_test_{next(_ids)}")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self.close_connection = True

    def _send_stream(self, msg: Mapping[str, Any]) -> None:
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.send_header("request-id", f"req_test_{next(_ids)}")
            self.end_headers()
            for event, data in sse_events(msg):
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
