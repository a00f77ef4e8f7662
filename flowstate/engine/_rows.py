"""Strict parsing of the JSON columns the engine reads back, with typed errors.

Every stored row is hash-checked by the store, but a row whose hash was recomputed (a
forged row) must still never reach node code as anything but validated data.
"""

from __future__ import annotations

from typing import Any, NotRequired

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from flowstate.errors import CorruptRowError

__all__ = ["parse"]


class _TaskJSON(TypedDict):
    node: str
    path: str
    send: NotRequired[bool]
    payload: NotRequired[Any]


class _SendJSON(TypedDict):
    node: str
    payload: Any


_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "tasks": TypeAdapter(list[_TaskJSON]),
    "joins": TypeAdapter(dict[str, list[str]]),
    "config": TypeAdapter(dict[str, Any]),
    "graph_doc": TypeAdapter(dict[str, Any]),
    "goto": TypeAdapter(list[str | _SendJSON]),
    "update": TypeAdapter(dict[str, Any]),
    "usage": TypeAdapter(dict[str, int]),
    "json": TypeAdapter(Any),
}

_EMPTY_OBJECT = frozenset({"joins", "config", "graph_doc", "update", "usage"})
_EMPTY_LIST = frozenset({"tasks", "goto"})


def parse(kind: str, raw: str | None, table: str, run_id: str, step: int | None) -> Any:
    """Parse one JSON column strictly; a bad value raises CorruptRowError naming the row."""
    if raw == "{}" and kind in _EMPTY_OBJECT:
        return {}  # the usual usage/joins/update of a row: no parser needed
    if raw == "[]" and kind in _EMPTY_LIST:
        return []
    try:
        return _ADAPTERS[kind].validate_json(raw if raw is not None else "null", strict=True)
    except (ValidationError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CorruptRowError(table, run_id, step, f"column {kind!r}: {first}") from None
