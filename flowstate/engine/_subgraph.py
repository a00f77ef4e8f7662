"""Subgraphs: a compiled graph as a node runs as a child run ``parent/step/task`` in the
parent's store, so a crash inside it resumes inside it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ._context import Interrupted

if TYPE_CHECKING:
    from ._activation import Activation
    from ._nodes import NodeSpec

__all__ = ["call_subgraph"]


_MISSING = object()


def _contribution(reducer: str | None, initial: Any, final: Any) -> Any:
    """What a subgraph added to a field, so the parent's reducer does not count the
    input twice: the appended suffix, the added amount, the changed keys. Fields without
    a built-in reducer get the subgraph's final value."""
    if initial is _MISSING:
        return final
    if reducer == "append" and isinstance(final, list) and isinstance(initial, list):
        if final[: len(initial)] == initial:
            return final[len(initial) :]
    elif reducer == "add":
        try:
            return final - initial
        except TypeError:
            return final
    elif reducer == "merge" and isinstance(final, dict) and isinstance(initial, dict):
        return {k: v for k, v in final.items() if k not in initial or initial[k] != v}
    return final


async def call_subgraph(act: Activation, spec: NodeSpec) -> dict[str, Any]:
    """Run (or continue) the child run of ``act`` and return the update it makes to the
    parent's state; a child that does not complete pauses the parent (``Interrupted``)."""
    sub = spec.subgraph
    assert sub is not None
    scope, step, task = act.scope, act.step, act.task
    schema = scope.schema
    child_id = f"{scope.run_id}/{step.number}/{task.path}"
    bound = sub.bind(scope.store)
    existing = scope.store.find_run(child_id)
    source: BaseModel = step.state
    if task.send:
        # a Send to a subgraph carries the fields to override; the rest come from the
        # step's input state
        payload = task.payload if isinstance(task.payload, dict) else {}
        source = schema.model.model_validate({**step.state.model_dump(), **payload})
    child_input = {cf: getattr(source, pf) for cf, pf in (spec.input_map or {}).items()}
    if existing is None:
        result = await bound.start_child(
            child_input,
            run_id=child_id,
            parent=scope.run_id,
            parent_step=step.number,
            emit=scope.emit,
            journal=scope.journal,
        )
    else:
        answers = act.load_answers()
        value = json.loads(answers[0]) if 0 in answers else None
        result = await bound.continue_child(
            child_id, value=value, emit=scope.emit, journal=scope.journal
        )
    if result.status != "completed":
        raise Interrupted(
            0,
            json.dumps({"subgraph": child_id, "status": result.status, "reason": result.reason}),
        )
    update: dict[str, Any] = {}
    for pf, cf in (spec.output_map or {}).items():
        final = getattr(result.state, cf)
        reducer = schema.fields[pf].reducer
        kind = None
        if reducer is not None:
            kind = "append" if reducer.wrap_item else reducer.name
        update[pf] = _contribution(kind, child_input.get(cf, _MISSING), final)
    return update
