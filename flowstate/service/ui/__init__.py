"""The run inspector: a page under ``/ui`` over the task API, and its browser login.

A browser cannot send a bearer header when it navigates, so a person logs in once with
the server's token (``POST /ui/login``) and gets a session cookie: ``HttpOnly`` (scripts
cannot read it), ``Secure``, ``SameSite=Strict`` (other sites' requests never carry it),
signed with the token (stateless: changing the token ends every session) and valid for
``SESSION_SECONDS``. ``InspectorGate`` sits in front of the API's own guard: a request
with a valid session cookie and no ``Authorization`` header is passed on as if it carried
the bearer token, so every API rule applies to the page exactly as to any client.

CSRF: a state-changing request authenticated by the cookie must also carry
``X-CSRF-Token`` (an HMAC of the session that only a same-origin page can read, from
``GET /ui/session``), and any state-changing request whose ``Origin`` is another origin is
refused, with or without a token (which also covers a token-less server on loopback).

The page itself is plain HTML, CSS and JavaScript shipped in this package (no build step,
no framework); it holds no data until its scripts call the API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["COOKIE", "SESSION_SECONDS", "InspectorGate"]

COOKIE = "flowstate_session"
SESSION_SECONDS = 12 * 3600
CSRF_HEADER = b"x-csrf-token"
MAX_LOGIN_BYTES = 4096

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    # not no-referrer: with it, browsers send "Origin: null" on form posts
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _static(name: str) -> bytes | None:
    """A file of the page, by plain name (no paths: nothing outside ``static/``)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    item = resources.files(__name__).joinpath("static", name)
    try:
        return item.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return bytes(v)
    return None


class InspectorGate:
    """Serves ``/ui`` and turns a valid browser session into the API's bearer auth."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    # -- sessions ---------------------------------------------------------------------------

    def _mac(self, text: str) -> str:
        assert self.token is not None
        return hmac.new(self.token, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        expiry = int((now or time.time()) + SESSION_SECONDS)
        nonce = secrets.token_hex(12)
        return f"{expiry}.{nonce}.{self._mac(f'session:{expiry}:{nonce}')}"

    def valid_session(self, value: str | None) -> bool:
        if self.token is None or not value:
            return False
        parts = value.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return False
        expiry, nonce, mac = parts
        if int(expiry) < time.time():
            return False
        return hmac.compare_digest(mac, self._mac(f"session:{expiry}:{nonce}"))

    def csrf_for(self, session: str) -> str:
        return self._mac(f"csrf:{session}")[:40]

    def _session(self, scope: Scope) -> str | None:
        raw = _header(scope, b"cookie")
        if raw is None:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw.decode("latin-1"))
        except Exception:  # a malformed Cookie header is no session
            return None
        morsel = jar.get(COOKIE)
        value = morsel.value if morsel is not None else None
        return value if self.valid_session(value) else None

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        if path == "/" and method in ("GET", "HEAD"):
            await _redirect(send, "/ui/")
            return
        if path == "/ui" or path.startswith("/ui/"):
            await self._ui(scope, receive, send, path, method)
            return
        if method in _UNSAFE and not _same_origin(scope):
            await _problem(
                send, 403, "cross-origin request refused: the Origin header names another site"
            )
            return
        if self.token is not None and _header(scope, b"authorization") is None:
            session = self._session(scope)
            if session is not None:
                if method in _UNSAFE:
                    given = _header(scope, CSRF_HEADER) or b""
                    if not hmac.compare_digest(given, self.csrf_for(session).encode()):
                        await _problem(
                            send,
                            403,
                            "a request authenticated by the session cookie must carry the "
                            "X-CSRF-Token header from GET /ui/session",
                        )
                        return
                headers = [*scope.get("headers", ()), (b"authorization", b"Bearer " + self.token)]
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)

    async def _ui(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        session = self._session(scope) if self.token is not None else None
        signed_in = self.token is None or session is not None
        if path in ("/ui", "/ui/", "/ui/index.html"):
            if method not in ("GET", "HEAD"):
                await _problem(send, 405, "use GET", allow="GET, HEAD")
                return
            if not signed_in:
                await _redirect(send, "/ui/login")
                return
            await _file(send, "index.html")
            return
        if path == "/ui/login":
            if method == "POST":
                await self._login(scope, receive, send)
                return
            if self.token is None:
                await _redirect(send, "/ui/")
                return
            await _file(send, "login.html")
            return
        if path == "/ui/logout":
            if method != "POST":
                await _problem(send, 405, "use POST", allow="POST")
                return
            if not _same_origin(scope):
                await _problem(send, 403, "cross-origin request refused")
                return
            await _redirect(
                send,
                "/ui/login",
                cookie=f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Strict",
            )
            return
        if path == "/ui/session":
            if not signed_in:
                await _json(send, 401, {"signed_in": False, "login": "/ui/login"})
                return
            await _json(
                send,
                200,
                {
                    "signed_in": True,
                    "auth": self.token is not None,
                    "csrf": self.csrf_for(session) if session is not None else None,
                },
            )
            return
        if path.startswith("/ui/static/") and method in ("GET", "HEAD"):
            name = path[len("/ui/static/") :]
            data = _static(name)
            ext = name[name.rfind(".") :] if "." in name else ""
            if data is not None and ext in _TYPES:
                await _send(send, 200, data, _TYPES[ext], cache=True)
                return
        await _problem(send, 404, f"no inspector page at {path}")

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None:
            await _redirect(send, "/ui/")
            return
        if not _same_origin(scope):
            await _problem(send, 403, "cross-origin request refused")
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_LOGIN_BYTES:
                await _problem(send, 413, "the login form is too large")
                return
            more = bool(message.get("more_body", False))
        form = parse_qs(body.decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0].strip().encode()
        if not given or not hmac.compare_digest(given, self.token):
            await _redirect(send, "/ui/login?error=1")
            return
        cookie = (
            f"{COOKIE}={self.new_session()}; Max-Age={SESSION_SECONDS}; Path=/; HttpOnly; "
            "Secure; SameSite=Strict"
        )
        await _redirect(send, "/ui/", cookie=cookie)


def _same_origin(scope: Scope) -> bool:
    """True unless an ``Origin`` header names another origin than the request's Host."""
    origin = _header(scope, b"origin")
    if origin is None:  # not a browser, or a same-origin GET
        return True
    host = (_header(scope, b"host") or b"").decode("latin-1").lower()
    try:
        parts = urlsplit(origin.decode("latin-1").lower())
    except ValueError:
        return False
    return bool(parts.netloc) and parts.netloc == host


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    *,
    cache: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"private, max-age=300" if cache else b"no-store"),
        *_SECURITY_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _file(send: Send, name: str) -> None:
    data = _static(name)
    assert data is not None, f"the inspector's {name} is missing from the package"
    await _send(send, 200, data, _TYPES[name[name.rfind(".") :]])


async def _redirect(send: Send, location: str, *, cookie: str | None = None) -> None:
    extra = [(b"location", quote(location, safe="/?=&").encode())]
    if cookie is not None:
        extra.append((b"set-cookie", cookie.encode()))
    await _send(send, 303, b"", "text/plain; charset=utf-8", extra=extra)


async def _json(send: Send, status: int, doc: dict[str, Any]) -> None:
    await _send(send, status, json.dumps(doc).encode(), "application/json")


async def _problem(send: Send, status: int, detail: str, *, allow: str | None = None) -> None:
    titles = {403: "Forbidden", 404: "Not found", 405: "Method not allowed", 413: "Too large"}
    doc = {
        "type": "about:blank",
        "title": titles.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    extra = [(b"allow", allow.encode())] if allow else None
    await _send(send, status, json.dumps(doc).encode(), "application/problem+json", extra=extra)
