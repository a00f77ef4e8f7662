"""HTTP plumbing: RFC 7807 problems, exception handlers, and the guard in front of the app.

The guard is plain ASGI and runs before routing, so a request is authenticated before
any work is done for it (the Langflow lesson, RELIABILITY.md §2.6 item 7), and a body is
refused with 413 from its ``Content-Length`` alone, or after at most ``max_body_bytes``
have been read when it is streamed without one: a 100 MiB body is never held in memory.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowstate.errors import (
    CorruptRowError,
    FlowstateError,
    GraphMismatch,
    InputRejected,
    PayloadTooLarge,
    RunNotFound,
    RunStateError,
    StoreError,
)

__all__ = ["ApiError", "Guard", "install_handlers", "problem"]

log = logging.getLogger("flowstate.service")

PROBLEM = "application/problem+json"

_STATUS_OF: tuple[tuple[type[FlowstateError], int], ...] = (
    (RunNotFound, 404),
    (RunStateError, 409),
    (GraphMismatch, 409),
    (InputRejected, 422),
    (PayloadTooLarge, 413),
    (CorruptRowError, 500),
    (StoreError, 503),
)
"""FlowstateError → HTTP status; the first matching class wins. Anything else is a 500."""

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    422: "Unprocessable request",
    500: "Internal server error",
    503: "Service unavailable",
}


class ApiError(Exception):
    """An error the service answers with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.code = code
        self.errors = errors
        self.headers = headers


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if code is not None:
        body["code"] = code
        body["type"] = f"urn:flowstate:error:{code}"
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


# -- exception handlers -------------------------------------------------------------------


def _clean_loc(loc: Iterable[Any], tags: frozenset[str]) -> list[str | int]:
    """``['body', '<graph>', 'input', 'x']`` → ``['body', 'input', 'x']``: the union tag
    pydantic puts in the path is the graph name the client already sent."""
    out = [p if isinstance(p, int) else str(p) for p in loc]
    if len(out) >= 2 and out[0] == "body" and out[1] in tags:
        del out[1]
    return out


def validation_items(
    errors: Iterable[dict[str, Any]], tags: frozenset[str]
) -> list[dict[str, Any]]:
    items = []
    for e in errors:
        loc = _clean_loc(e.get("loc", ()), tags)
        msg = str(e.get("msg", "invalid"))
        kind = str(e.get("type", "value_error"))
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            loc = [*loc, "graph"]
            ctx = e.get("ctx") or {}
            if kind == "union_tag_invalid":
                msg = (
                    f"unknown graph {str(ctx.get('tag', ''))[:100]!r}: this server runs "
                    f"{', '.join(sorted(tags))}"
                )
            else:
                msg = f"Field required: name one of the graphs {', '.join(sorted(tags))}"
        items.append({"loc": loc, "msg": msg[:500], "type": kind})
    return items


def install_handlers(app: FastAPI, graph_names: Iterable[str]) -> None:
    tags = frozenset(graph_names)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        items = validation_items(exc.errors(), tags)
        first = items[0] if items else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
        return problem(422, f"{where}: {first['msg']}{more}", errors=items)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem(exc.status_code, detail, headers=headers or None)

    async def on_api(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return problem(
            exc.status,
            exc.detail,
            title=exc.title,
            code=exc.code,
            errors=exc.errors,
            headers=exc.headers,
        )

    async def on_flowstate(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FlowstateError)
        status = next((s for cls, s in _STATUS_OF if isinstance(exc, cls)), 500)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
            detail = (
                "a stored row failed its integrity check; run `flowstate doctor`"
                if isinstance(exc, CorruptRowError)
                else "the checkpoint store is unavailable"
                if isinstance(exc, StoreError)
                else "the request failed inside the engine"
            )
            return problem(status, detail, code=exc.code)
        return problem(status, exc.message, code=exc.code)

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        # logged with its traceback for the operator; the client gets no internals
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(500, "the server failed to handle the request")

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ApiError, on_api)
    app.add_exception_handler(FlowstateError, on_flowstate)
    app.add_exception_handler(Exception, on_unhandled)


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at this path. Starlette's own 405 names only the
    first route that matched the path, so GET and POST /v1/tasks would say 'Allow: POST'."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


# -- the guard: auth, then the body limit -----------------------------------------------


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return bytes(v)
    return None


class _Bad:
    def __init__(self, text: str) -> None:
        self.text = text


class _Pairs(dict[str, Any]):
    duplicates: list[str]


def _pairs(items: list[tuple[str, Any]]) -> _Pairs:
    d = _Pairs()
    d.duplicates = []
    for k, v in items:
        if k in d:
            d.duplicates.append(k)
        d[k] = v
    return d


def _float(text: str) -> Any:
    f = float(text)
    return _Bad(text) if math.isinf(f) else f


def _find_bad(value: Any, path: list[str]) -> tuple[str, str] | None:
    if isinstance(value, _Bad):
        return ".".join(path), (
            f"{value.text} is not a finite JSON number; checkpoints are standard JSON, "
            "so NaN, Infinity and numbers beyond float range are refused"
        )
    if isinstance(value, _Pairs):
        if value.duplicates:
            key = value.duplicates[0]
            return ".".join([*path, key]), f"the key {key!r} appears more than once in one object"
        for k, v in value.items():
            found = _find_bad(v, [*path, k])
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_bad(v, [*path, str(i)])
            if found:
                return found
    return None


def strict_json_problem(body: bytes) -> tuple[str, str] | None:
    """``(field path, why)`` when a JSON request body holds ``NaN``/``Infinity``, a number
    beyond float range (``1e999``) or a duplicate key, which Python's and pydantic's JSON
    parsers accept (last key wins) but a checkpoint must not silently keep; None when the
    body is standard JSON or not JSON at all (then the normal validation answers)."""
    try:
        doc = json.loads(body, object_pairs_hook=_pairs, parse_constant=_Bad, parse_float=_float)
    except (ValueError, RecursionError):
        return None
    return _find_bad(doc, ["body"])


class Guard:
    """Bearer-token check and request-body bound, before the app sees the request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_body_bytes: int,
        open_paths: frozenset[str] = frozenset({"/health", "/ready"}),
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body_bytes
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token is not None and scope.get("path") not in self.open_paths:
            refusal = self._check_token(_header(scope, b"authorization"))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await problem(400, "Content-Length is not a number")(scope, receive, send)
                return
            if int(length) > self.max_body:
                await self._too_large(int(length))(scope, receive, send)
                return
        # Read the body here, counting: a body sent without Content-Length (chunked) is
        # refused as soon as it passes the limit, so at most max_body bytes are buffered.
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                await self._too_large(None)(scope, receive, send)
                return
            if chunk:
                chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if body and scope.get("method") in ("POST", "PUT", "PATCH"):
            bad = strict_json_problem(body)
            if bad is not None:
                await problem(
                    422,
                    f"{bad[0]}: {bad[1]}",
                    errors=[{"loc": bad[0].split("."), "msg": bad[1], "type": "json_strict"}],
                )(scope, receive, send)
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, for streaming responses

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, replay, tracking_send)
        except Exception as exc:
            # Answer here rather than in Starlette's ServerErrorMiddleware, which re-raises
            # after its response, and uvicorn then drops the keep-alive connection under
            # the client's next request.
            log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
            if started:
                raise
            await problem(500, "the server failed to handle the request")(scope, receive, send)

    def _check_token(self, header: bytes | None) -> JSONResponse | None:
        assert self.token is not None
        challenge = 'Bearer realm="flowstate"'
        if header is None:
            return problem(
                401,
                "this server requires a bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": challenge},
            )
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            return problem(
                401,
                "the bearer token is not valid",
                headers={"WWW-Authenticate": f'{challenge}, error="invalid_token"'},
            )
        return None

    def _too_large(self, length: int | None) -> JSONResponse:
        got = f"{length} bytes" if length is not None else "more than that"
        return problem(
            413,
            f"request bodies are limited to {self.max_body} bytes; this one has {got}",
            headers={"Connection": "close"},
        )
