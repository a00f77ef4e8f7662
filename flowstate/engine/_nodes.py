"""What the engine learns from a node's signature: its input, its context, its writes."""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter
from typing_extensions import is_typeddict

from ._types import Command, Send

__all__ = [
    "NodeSpec",
    "RetryPolicy",
    "RouterSpec",
    "analyse_node",
    "analyse_router",
    "default_retry_on",
    "policy_for",
]


_PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,  # pydantic's ValidationError and json's JSONDecodeError included
    LookupError,  # KeyError, IndexError
    AttributeError,
    NameError,
    AssertionError,
    ArithmeticError,
    ImportError,
    NotImplementedError,
    SyntaxError,
    RecursionError,
)
"""Bugs, not faults: the same input fails the same way on every attempt."""

_PERMANENT_OS_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
"""HTTP statuses worth another try (with 5xx, and 529 "overloaded")."""


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an error carries (anthropic's APIStatusError and flowstate's
    LLMError have ``status_code``; httpx's HTTPStatusError has ``response``)."""
    code = getattr(exc, "status_code", None)
    if code is None:
        code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def default_retry_on(exc: BaseException) -> bool:
    """The default ``RetryPolicy.retry_on``: retry faults, never bugs.

    1. An error that says whether it is worth retrying (a ``retryable`` bool attribute:
       every ``FlowstateError`` has one, ``False`` unless the error is transient) is
       taken at its word.
    2. Programming errors are not retried: ``TypeError``, ``ValueError`` (pydantic's
       ``ValidationError`` too), ``KeyError``/``IndexError``, ``AttributeError``,
       ``NameError``, ``AssertionError``, arithmetic and import errors; nor file errors
       that another attempt cannot fix (missing file, permission).
    3. An error with an HTTP status is retried on 408, 409, 425, 429 and 5xx (rate
       limits, overload, server errors), not on other 4xx.
    4. Anything else is retried: network and timeout errors (``ConnectionError``,
       ``TimeoutError``, ``OSError``, httpx's and anthropic's connection and timeout
       errors) and errors the engine cannot classify.
    """
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, _PROGRAMMING_ERRORS):
        return False
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    llm = sys.modules.get("flowstate.llm")  # not imported: none of its errors can exist
    if llm is not None and isinstance(
        exc, llm.LLMConfigError | llm.ScriptExhausted | llm.ToolInputError
    ):
        return False  # the setup or the script is wrong: another attempt is the same
    status = _status_of(exc)
    if status is not None:
        return status >= 500 or status in _TRANSIENT_STATUS
    return True


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a failing node: ``max_attempts`` in all, exponential backoff with jitter.

    ``retry_on`` chooses the errors worth another attempt: exception classes, or a
    predicate ``(exc) -> bool``. The default, ``default_retry_on``, retries faults
    (network, timeouts, rate limits, overload, 5xx, errors marked ``retryable``) and
    never bugs (``TypeError``, ``ValueError``, ``KeyError``, …). A node may take several
    policies, ``retry=[RetryPolicy(...), RetryPolicy(...)]``: the first whose
    ``retry_on`` matches the error decides.
    """

    max_attempts: int = 3
    initial_delay: float = 0.1
    backoff: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.1
    retry_on: (
        tuple[type[BaseException], ...] | type[BaseException] | Callable[[BaseException], bool]
    ) = default_retry_on

    def matches(self, exc: BaseException) -> bool:
        """Whether this policy applies to ``exc``."""
        on = self.retry_on
        if isinstance(on, tuple) or isinstance(on, type):
            return isinstance(exc, on)
        return bool(on(exc))

    def delay(self, attempt: int, rnd: float) -> float:
        base = min(self.max_delay, self.initial_delay * self.backoff ** (attempt - 1))
        return base * (1 + self.jitter * (2 * rnd - 1))


def policy_for(policies: Sequence[RetryPolicy], exc: BaseException) -> RetryPolicy | None:
    """The first policy whose ``retry_on`` matches ``exc`` (None: do not retry)."""
    for p in policies:
        if p.matches(exc):
            return p
    return None


@dataclass
class NodeSpec:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    input_kind: Literal["state", "view", "none"]
    input_type: Any
    """The state class, a view model, or another annotation (the payload type of Sends)."""
    ctx_param: str | None
    writes: frozenset[str] | None
    """Fields the node may write; None when its return annotation does not say."""
    write_types: dict[str, Any] = field(default_factory=dict)
    goto: tuple[str, ...] = ()
    retry: tuple[RetryPolicy, ...] = ()
    """Retry policies, tried in order: the first that matches an error decides."""
    timeout: float | None = None
    max_visits: int | None = None
    subgraph: Any = None
    """A CompiledGraph when the node is a subgraph."""
    input_map: Mapping[str, str] | None = None
    output_map: Mapping[str, str] | None = None
    payload_adapter: TypeAdapter[Any] | None = None
    payload_only: bool = False
    """The input model has fields the state lacks, so it is not a view: the node can only
    be reached by ``Send(node, payload)``."""

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "subgraph" if self.subgraph is not None else "node",
            "writes": sorted(self.writes) if self.writes is not None else None,
            "goto": list(self.goto),
        }


@dataclass
class RouterSpec:
    source: str
    fn: Callable[..., Any]
    targets: tuple[str, ...]
    mapping: dict[Any, str] | None
    multi: bool
    """True when the router may return several targets or Sends (a fan-out)."""
    input_kind: Literal["state", "view", "none"]
    input_type: Any
    name: str
    sends: bool = True
    """False when the return annotation rules Sends out (e.g. ``list[Literal[...]]``), so a
    target cannot be activated several times in one step."""


def _hints(fn: Callable[..., Any], state: type[BaseModel] | None = None) -> dict[str, Any]:
    target = fn
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(fn, "__call__", fn)  # noqa: B004 - callable objects
    try:
        return typing.get_type_hints(target, include_extras=False)
    except Exception:
        raw = dict(getattr(target, "__annotations__", {}) or {})
        scope = dict(getattr(target, "__globals__", {}))
        if state is not None:
            scope.setdefault(state.__name__, state)
        from ._context import NodeContext

        scope.setdefault("NodeContext", NodeContext)
        code, cells = getattr(target, "__code__", None), getattr(target, "__closure__", None)
        if code is not None and cells:
            scope.update(
                {n: c.cell_contents for n, c in zip(code.co_freevars, cells, strict=False)}
            )
        out: dict[str, Any] = {}
        for k, v in raw.items():
            if isinstance(v, str):
                try:
                    v = eval(v, scope)
                except Exception:
                    raise UnresolvedAnnotation(
                        f"the annotation {v!r} of parameter '{k}' of "
                        f"{getattr(fn, '__name__', fn)!r} cannot be resolved: define "
                        f"'{v}' at module level (or drop `from __future__ import annotations`)"
                    ) from None
            out[k] = v
        return out


class UnresolvedAnnotation(ValueError):
    """A node's or router's annotation names something that is not in scope."""


def _params(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []


def _is_ctx(p: inspect.Parameter, hints: dict[str, Any]) -> bool:
    ann = hints.get(p.name)
    return p.name == "ctx" or getattr(ann, "__name__", "") == "NodeContext"


def _input(fn: Callable[..., Any], state: type[BaseModel]) -> tuple[str, Any, str | None]:
    hints = _hints(fn, state)
    params = [p for p in _params(fn) if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    ctx = next((p.name for p in params if _is_ctx(p, hints)), None)
    data = [p for p in params if not _is_ctx(p, hints)]
    if not data:
        return "none", None, ctx
    ann = hints.get(data[0].name, state)
    if ann is state or ann is inspect.Parameter.empty:
        return "state", state, ctx
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "view", ann, ctx
    return "view", ann, ctx


def _writes(ret: Any) -> tuple[frozenset[str] | None, dict[str, Any]]:
    """Fields declared by a return annotation; None means "unknown (any field)"."""
    if ret is None or ret is type(None):
        return frozenset(), {}
    if ret is inspect.Parameter.empty or ret is Any:
        return None, {}
    origin = get_origin(ret)
    if origin is Command or ret is Command:
        args = get_args(ret)
        return _writes(args[0]) if args else (None, {})
    if origin in (Union, types.UnionType):
        names: set[str] = set()
        wtypes: dict[str, Any] = {}
        for a in get_args(ret):
            w, t = _writes(a)
            if w is None:
                return None, {}
            names |= w
            wtypes.update(t)
        return frozenset(names), wtypes
    if isinstance(ret, type) and issubclass(ret, BaseModel):
        return frozenset(ret.model_fields), {k: f.annotation for k, f in ret.model_fields.items()}
    if is_typeddict(ret):
        hints = typing.get_type_hints(ret)
        return frozenset(hints), dict(hints)
    return None, {}


def analyse_node(name: str, fn: Callable[..., Any], state: type[BaseModel]) -> NodeSpec:
    kind, input_type, ctx = _input(fn, state)
    hints = _hints(fn, state)
    ret = hints.get("return", inspect.Parameter.empty)
    writes, wtypes = _writes(ret)
    call = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    payload_adapter = None
    if input_type is not None and input_type is not state:
        try:
            payload_adapter = TypeAdapter(input_type)
        except Exception:
            payload_adapter = None
    payload_only = (
        kind == "view"
        and isinstance(input_type, type)
        and issubclass(input_type, BaseModel)
        and not set(input_type.model_fields) <= set(state.model_fields)
    )
    return NodeSpec(
        name=name,
        fn=fn,
        payload_only=payload_only,
        is_async=inspect.iscoroutinefunction(call),
        input_kind=kind,  # type: ignore[arg-type]
        input_type=input_type,
        ctx_param=ctx,
        writes=writes,
        write_types=wtypes,
        payload_adapter=payload_adapter,
    )


def _literal_targets(ann: Any) -> tuple[list[str], bool]:
    """Targets listed by a router's return annotation, and whether it may fan out."""
    if ann is None or ann is inspect.Parameter.empty:
        return [], False
    origin = get_origin(ann)
    if origin is Literal:
        return [str(a) for a in get_args(ann)], False
    if origin in (Union, types.UnionType):
        out: list[str] = []
        multi = False
        for a in get_args(ann):
            t, m = _literal_targets(a)
            out += t
            multi = multi or m
        return out, multi
    if origin in (list, tuple, set, frozenset) or ann is Send or origin is Send:
        out = []
        for a in get_args(ann):
            t, _ = _literal_targets(a)
            out += t
        return out, True
    return [], False


def analyse_router(
    source: str,
    fn: Callable[..., Any],
    state: type[BaseModel],
    targets: Sequence[str] | Mapping[Any, str] | None,
) -> RouterSpec:
    kind, input_type, _ = _input(fn, state)
    ret = _hints(fn, state).get("return")
    ann_targets, multi = _literal_targets(ret)
    mapping: dict[Any, str] | None = None
    if targets is None:
        declared = ann_targets
    elif isinstance(targets, Mapping):
        mapping = dict(targets)
        declared = list(dict.fromkeys(mapping.values()))
    else:
        declared = [str(t) for t in targets]
        if ret is not None and (get_origin(ret) in (list, tuple) or ret is list):
            multi = True
    if ret is not None and (get_origin(ret) in (list, tuple) or ret in (list, tuple)):
        multi = True
    sends = multi and not _literal_only(ret)
    return RouterSpec(
        source=source,
        fn=fn,
        targets=tuple(dict.fromkeys(declared)),
        mapping=mapping,
        multi=multi,
        input_kind=kind,  # type: ignore[arg-type]
        input_type=input_type,
        name=getattr(fn, "__name__", "router"),
        sends=sends,
    )


def _literal_only(ann: Any) -> bool:
    """True when an annotation is made only of Literal targets (no Send, no bare str)."""
    if ann is None or ann is inspect.Parameter.empty:
        return False
    origin = get_origin(ann)
    if origin is Literal:
        return True
    if origin in (Union, types.UnionType, list, tuple, set, frozenset):
        args = get_args(ann)
        return bool(args) and all(_literal_only(a) for a in args if a is not Ellipsis)
    return False
