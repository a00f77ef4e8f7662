"""Subgraphs: a compiled graph as a node runs as a child run ``parent/step/task`` in the
parent's store, so a crash inside it resumes inside it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ._context import Interrupted
from ._interrupts import SUBGRAPH_SEQ

if TYPE_CHECKING:
    from ._context import NodeContext
    from ._nodes import NodeSpec
    from ._scheduler import Execution
    from ._types import Task

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
        if isinstance(initial, str | list | tuple | bytes) and type(final) is type(initial):
            # sequences: what the child concatenated (a prefix the child kept as it was)
            if final[: len(initial)] == initial:
                return final[len(initial) :]
            return final
        added: Any = final
        try:
            return added - initial
        except TypeError:
            return final
    elif reducer == "merge" and isinstance(final, dict) and isinstance(initial, dict):
        return {k: v for k, v in final.items() if k not in initial or initial[k] != v}
    return final


def _inherited(self: Execution) -> dict[str, Any]:
    """What a child run takes from its parent: the run's limits (byte limits and budgets
    apply to the whole run tree) and the tokens the tree had used when the child started
    or resumed, so a budget counts the parent's and the child's tokens together."""
    return {
        "limits": self.limits.model_dump(),
        "token_base": [self.tokens_in, self.tokens_out],
    }


def _tree_usage(store: Any, run_id: str) -> dict[str, int]:
    """Tokens of a run's committed activations; a subgraph activation's usage already
    counts its child run, so this is the whole tree below ``run_id``."""
    total: dict[str, int] = {}
    for w in store.writes(run_id):
        if w.usage and w.usage != "{}":
            for k, v in json.loads(w.usage).items():
                total[k] = total.get(k, 0) + int(v)
    return total


async def call_subgraph(self: Execution, spec: NodeSpec, task: Task, ctx: NodeContext) -> Any:
    sub = spec.subgraph
    child_id = f"{self.run_id}/{self.step}/{task.path}"
    bound = sub._bind(self.store)
    existing = self.store.find_run(child_id)
    source: BaseModel = self.state
    if task.send:
        # a Send to a subgraph carries the fields to override; the rest come from the
        # step's input state
        payload = task.payload if isinstance(task.payload, dict) else {}
        source = self.schema.model.model_validate({**self.state.model_dump(), **payload})
    child_input = {cf: getattr(source, pf) for cf, pf in (spec.input_map or {}).items()}
    if existing is None:
        config = {
            "max_steps": sub.max_steps,
            "max_concurrency": sub.max_concurrency,
            # breakpoints compiled into the subgraph are honoured (replay passes them,
            # like the top-level run's)
            "interrupt_before": [] if self.replay else list(sub.interrupt_before),
            "interrupt_after": [] if self.replay else list(sub.interrupt_after),
            **_inherited(self),
        }
        result = await bound._start(
            child_input,
            run_id=child_id,
            parent=self.run_id,
            parent_step=self.step,
            emit=self.emit,
            journal=self.journal,
            config=config,
        )
    else:
        # answers to the child's interrupts were stored in the child run by id
        # (resume(answers=...) on the top-level run): continuing it reads them
        result = await bound._continue(
            child_id, emit=self.emit, journal=self.journal, inherit=_inherited(self)
        )
    if result.status != "completed":
        raise Interrupted(
            SUBGRAPH_SEQ,
            json.dumps({"subgraph": child_id, "status": result.status, "reason": result.reason}),
        )
    usage = _tree_usage(self.store, child_id)
    ctx.add_usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0))
    update: dict[str, Any] = {}
    for pf, cf in (spec.output_map or {}).items():
        final = getattr(result.state, cf)
        reducer = self.schema.fields[pf].reducer
        kind = None
        if reducer is not None:
            kind = "append" if reducer.wrap_item else reducer.name
        update[pf] = _contribution(kind, child_input.get(cf, _MISSING), final)
    return update
