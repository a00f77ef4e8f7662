"""Item 5 of issue 15: the default RetryPolicy retries faults, never bugs; retry_on
overrides; several policies per node, the first match wins."""

from __future__ import annotations

import httpx
import pydantic
import pytest
from anthropic import APIConnectionError, APITimeoutError, BadRequestError, RateLimitError
from anthropic import InternalServerError as AnthropicServerError
from pydantic import BaseModel

from flowstate import (
    END,
    START,
    FlowstateError,
    GraphBuilder,
    NodeFailed,
    RetryPolicy,
    RunStateError,
    UpdateRejected,
)
from flowstate.engine import default_retry_on
from flowstate.llm import LLMConfigError, LLMError


class S(BaseModel):
    n: int = 0


class Transient(FlowstateError):
    code = "FS999"
    retryable = True


def _response(status: int) -> httpx.Response:
    req = httpx.Request("POST", "http://127.0.0.1/v1/messages")
    return httpx.Response(status, request=req, json={"type": "error"})


def _validation_error() -> pydantic.ValidationError:
    try:
        S.model_validate({"n": "x"})
    except pydantic.ValidationError as e:
        return e
    raise AssertionError


NOT_RETRIED = [
    TypeError("t"),
    ValueError("v"),
    KeyError("k"),
    AttributeError("a"),
    NameError("n"),
    AssertionError("x"),
    _validation_error(),
    FileNotFoundError("f"),
    RunStateError("flowstate's own errors say no unless retryable"),
    UpdateRejected("n", "f", "bad"),
    LLMConfigError("no key"),
    LLMError("bad request", status_code=400),
    BadRequestError("bad", response=_response(400), body=None),
    httpx.HTTPStatusError("404", request=_response(404).request, response=_response(404)),
]
RETRIED = [
    ConnectionError("reset"),
    TimeoutError("slow"),
    OSError("network unreachable"),
    httpx.ConnectTimeout("connect timeout"),
    httpx.ReadTimeout("read timeout"),
    APIConnectionError(request=_response(500).request),
    APITimeoutError(request=_response(500).request),
    RateLimitError("rate", response=_response(429), body=None),
    AnthropicServerError("boom", response=_response(500), body=None),
    LLMError("overloaded", status_code=529),
    LLMError("rate limited", status_code=429),
    httpx.HTTPStatusError("503", request=_response(503).request, response=_response(503)),
    Transient("flowstate error marked retryable"),
    RuntimeError("unclassified: retried"),
]


@pytest.mark.parametrize("exc", NOT_RETRIED, ids=lambda e: type(e).__name__)
def test_default_does_not_retry_bugs(exc):
    assert default_retry_on(exc) is False


@pytest.mark.parametrize("exc", RETRIED, ids=lambda e: type(e).__name__)
def test_default_retries_faults(exc):
    assert default_retry_on(exc) is True


def _graph(raise_: list[BaseException], retry) -> tuple[GraphBuilder[S], list[int]]:
    calls: list[int] = []

    def node(s: S) -> dict:
        calls.append(1)
        if len(calls) <= len(raise_):
            raise raise_[len(calls) - 1]
        return {"n": len(calls)}

    g = GraphBuilder(S).add_node(node, retry=retry)
    g.add_edge(START, "node").add_edge("node", END)
    return g, calls


def test_default_policy_in_a_run(tmp_path):
    g, calls = _graph([KeyError("missing")], RetryPolicy(initial_delay=0.001))
    with pytest.raises(NodeFailed, match="KeyError"):
        g.compile(store=str(tmp_path / "a.db")).run_sync({})
    assert len(calls) == 1  # a bug is not retried
    g, calls = _graph([ConnectionError("a"), TimeoutError("b")], RetryPolicy(initial_delay=0.001))
    assert g.compile(store=str(tmp_path / "b.db")).run_sync({}).state.n == 3


def test_retry_on_overrides_and_first_matching_policy_wins(tmp_path):
    # retry_on= says ValueError is transient here
    g, calls = _graph(
        [ValueError("flaky parser")],
        RetryPolicy(initial_delay=0.001, retry_on=(ValueError,)),
    )
    assert g.compile(store=str(tmp_path / "a.db")).run_sync({}).state.n == 2
    # two policies: ConnectionError gets 5 attempts from the first, the rest the default's 2
    policies = [
        RetryPolicy(max_attempts=5, initial_delay=0.001, retry_on=(ConnectionError,)),
        RetryPolicy(max_attempts=2, initial_delay=0.001),
    ]
    g, calls = _graph([ConnectionError("x")] * 4, policies)
    assert g.compile(store=str(tmp_path / "b.db")).run_sync({}).state.n == 5
    g, calls = _graph([TimeoutError("x")] * 4, policies)
    with pytest.raises(NodeFailed, match="TimeoutError"):
        g.compile(store=str(tmp_path / "c.db")).run_sync({})
    assert len(calls) == 2
    # a predicate works as retry_on too
    g, calls = _graph(
        [RuntimeError("retry me"), RuntimeError("not me")],
        RetryPolicy(max_attempts=5, initial_delay=0.001, retry_on=lambda e: "retry" in str(e)),
    )
    with pytest.raises(NodeFailed, match="not me"):
        g.compile(store=str(tmp_path / "d.db")).run_sync({})
    assert len(calls) == 2
