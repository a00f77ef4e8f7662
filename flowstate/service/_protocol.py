"""Bounded request reads and a connection limit for ``flowstate serve``.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but not the reading
of a request: a client that opens a connection and never finishes its headers, or
announces a body and never sends it, holds the connection (and a file descriptor) forever,
and its ``limit_concurrency`` only answers 503 to *complete* requests. This HTTP/1.1
protocol (uvicorn's h11 protocol, chosen explicitly so the behaviour does not depend on
whether ``httptools`` is installed) adds:

- a **header deadline**: from the connection's first moment (or the first byte of a
  further keep-alive request) the request line and headers must be complete within
  ``header_timeout`` seconds, however slowly they trickle in (an absolute deadline, not an
  idle timer, so a byte every second does not keep it open);
- a **body deadline**: once the headers are in, the announced body must be complete within
  ``body_timeout`` seconds;
- a **connection limit**: beyond ``max_connections`` open connections a new one is answered
  ``503`` and closed at once.

A request that passes its deadline is answered ``408 Request Timeout`` (problem+json,
``Connection: close``) when a byte of it had arrived, and the connection is closed (the
application, if it was reading the body, sees a disconnect). Responses are not limited:
an event stream may stay open as long as the client reads it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ServerLimits", "guarded_protocol", "server_config"]


@dataclass(frozen=True)
class ServerLimits:
    """How long a request may take to arrive, and how many connections may be open."""

    header_timeout: float = 10.0
    """Seconds for the request line and headers, from the first byte (or the connection)."""
    body_timeout: float = 30.0
    """Seconds for the request body, from the end of the headers."""
    max_connections: int = 1000
    """Open connections at most; a further one gets 503 and is closed."""

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive seconds, not {value}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")


def _problem(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps(
        {"type": "about:blank", "title": reason, "status": status, "detail": detail}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def guarded_protocol(limits: ServerLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with ``limits`` (pass as ``uvicorn.Config(http=...)``)."""

    class GuardedH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _phase: str | None = None
        _seen = False
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            if len(self.connections) >= limits.max_connections:
                self._refused = True
                transport.write(
                    _problem(
                        503,
                        "Service Unavailable",
                        f"more than {limits.max_connections} open connections; retry later",
                    )
                )
                transport.close()
                return
            super().connection_made(transport)
            self._enter("headers")

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._enter(None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._phase is None and self.conn.their_state is h11.IDLE:
                self._enter("headers")  # the first byte of a further keep-alive request
            self._seen = True
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                if self._phase != "body":
                    self._enter("body")
            elif state is not h11.IDLE:
                self._enter(None)  # the request is in: its response is not limited

        def _enter(self, phase: str | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if phase == "headers" and self._phase != "headers":
                self._seen = False
            self._phase = phase
            if phase is not None:
                wait = limits.header_timeout if phase == "headers" else limits.body_timeout
                self._timer = self.loop.call_later(wait, self._expired, phase)

        def _expired(self, phase: str) -> None:
            self._timer = None
            if self.transport.is_closing() or self._phase != phase:
                return
            started = self.cycle is not None and self.cycle.response_started
            if self._seen and not started:
                wait = limits.header_timeout if phase == "headers" else limits.body_timeout
                self.transport.write(
                    _problem(
                        408,
                        "Request Timeout",
                        f"the request {phase} did not arrive within {wait:g} s",
                    )
                )
            self._phase = None
            self.transport.close()

    return GuardedH11Protocol


def server_config(app: Any, limits: ServerLimits, **kwargs: Any) -> Any:
    """A ``uvicorn.Config`` serving ``app`` with ``limits`` (``kwargs`` go to it)."""
    import uvicorn

    return uvicorn.Config(app, http=guarded_protocol(limits), **kwargs)
