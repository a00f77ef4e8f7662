"""Give the node functions built here the signature the engine reads.

The engine learns a node's context parameter and its writes from annotations (a parameter
named `ctx` or annotated `NodeContext`; a `TypedDict` return annotation lists the fields it
writes). A node built at run time has no source annotations, so they are set here: the return
annotation becomes a `TypedDict` of exactly the fields this node writes, and `compile()` then
checks them against the state (a misspelt field fails the build, not the run).
"""

from __future__ import annotations

import inspect
import keyword
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from typing_extensions import TypedDict

from flowstate.engine import NodeContext, Reducer

__all__ = ["annotate_node", "require_reducer"]


def annotate_node(fn: Callable[..., Any], name: str, writes: dict[str, Any]) -> None:
    """Name `fn` and annotate it as `(state, ctx: NodeContext) -> <TypedDict of writes>`."""
    ident = re.sub(r"\W", "_", name) or "node"
    if ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"node_{ident}"
    fn.__name__ = name
    fn.__qualname__ = name
    # The functional form: the field names are only known at run time.
    fields = TypedDict(f"{ident}_writes", dict(writes))  # type: ignore[operator]  # noqa: UP013
    fields.__doc__ = f"Fields node {name!r} writes."
    fn.__annotations__ = {"ctx": NodeContext, "return": fields}


def require_reducer(state: BaseModel, field: str, node: str, kind: str) -> list[Any]:
    """The list in `state.<field>`, after checking the field accumulates appended messages."""
    model = type(state)
    info = model.model_fields.get(field)
    if info is None:
        known = ", ".join(model.model_fields) or "none"
        raise ValueError(
            f"{kind} '{node}' reads the conversation from '{field}', but {model.__name__} has no "
            f"such field (fields: {known}); add `{field}: Annotated[list[Message], "
            "messages_reducer] = []` or pass messages_field=..."
        )
    if not any(isinstance(m, Reducer) or inspect.isfunction(m) for m in info.metadata):
        raise ValueError(
            f"{kind} '{node}' appends messages to {model.__name__}.{field}, which has no reducer, "
            f"so each write would replace the whole conversation: declare `{field}: "
            "Annotated[list[Message], messages_reducer] = []`"
        )
    value = getattr(state, field)
    return list(value or ())
