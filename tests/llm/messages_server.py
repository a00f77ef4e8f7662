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

A queued `message(...)` is sent as JSON, or as server-sent events when the request has
`"stream": true`.
"""

from __future__ import annotations

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
    "text",
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
    _validate_messages(body.get("messages"))


def _validate_system(system: Any) -> None:
    if isinstance(system, str):
        return
    if not isinstance(system, list) or not all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        raise _bad("system: must be a string or a list of text blocks")


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
        return [{"type": "text", "text": content}]
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


# --- server-sent events ---------------------------------------------------------------------


def sse_events(msg: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The event sequence the real API streams for `msg`."""
    start = {
        **msg,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": msg["usage"]["input_tokens"], "output_tokens": 1},
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

    @property
    def bodies(self) -> list[Any]:
        """JSON bodies of the recorded requests, in order."""
        with self._lock:
            return [r.body for r in self.requests]

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
        if reply.is_message and body.get("stream") is True:
            assert reply.body is not None
            self._send_stream(reply.body)
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
