"""Subgraphs: a compiled graph as a node runs as a child run ``parent/step/task`` in the
parent's store, so a crash inside it resumes inside it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flowstate.checkpoints import CheckpointStore, TimerStore

from ._context import Interrupted
from ._interrupts import SUBGRAPH_SEQ
from ._point import Inherited, RunConfig

if TYPE_CHECKING:
    from ._activation import Activation
    from ._context import NodeContext
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


def _inherited(act: Activation) -> Inherited:
    """What a child run takes from its parent: the run's limits (byte limits and budgets
    apply to the whole run tree) and the tokens and USD the tree had used when the child
    started or resumed, so a budget counts the parent's and the child's spend together."""
    p = act.step.progress
    return Inherited(
        limits=act.scope.config.limits,
        token_base=(p.tokens_in, p.tokens_out),
        cost_base=p.cost_usd,
    )


def _tree_usage(store: CheckpointStore, run_id: str) -> dict[str, int]:
    """Tokens of a run's committed activations; a subgraph activation's usage already
    counts its child run, so this is the whole tree below ``run_id``."""
    total: dict[str, int] = {}
    for w in store.writes(run_id):
        if w.usage and w.usage != "{}":
            for k, v in json.loads(w.usage).items():
                total[k] = total.get(k, 0) + int(v)
    return total


async def call_subgraph(act: Activation, spec: NodeSpec, ctx: NodeContext) -> dict[str, Any]:
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
    inherited = _inherited(act)
    if existing is None:
        config = RunConfig(
            max_steps=sub.max_steps,
            limits=inherited.limits,
            # breakpoints compiled into the subgraph are honoured (replay passes them,
            # like the top-level run's)
            interrupt_before=() if scope.replay else tuple(sub.interrupt_before),
            interrupt_after=() if scope.replay else tuple(sub.interrupt_after),
            max_concurrency=sub.max_concurrency,
            token_base=inherited.token_base,
            cost_base=inherited.cost_base,
        )
        result = await bound.start_child(
            child_input,
            run_id=child_id,
            parent=scope.run_id,
            parent_step=step.number,
            emit=scope.emit,
            journal=scope.journal,
            config=config,
        )
    else:
        # answers to the child's interrupts were stored in the child run by id
        # (resume(answers=...) on the top-level run): continuing it reads them
        result = await bound.continue_child(
            child_id, emit=scope.emit, journal=scope.journal, inherit=inherited
        )
    if result.status != "completed":
        raise Interrupted(
            SUBGRAPH_SEQ,
            json.dumps({"subgraph": child_id, "status": result.status, "reason": result.reason}),
            # a timer or deadline in the child is due on the parent too (the parent is the
            # run a waker resumes; it continues the child)
            wake_at=scope.store.wake_time(child_id)
            if isinstance(scope.store, TimerStore)
            else None,
        )
    usage = _tree_usage(scope.store, child_id)
    # every count (cache tokens, per-model keys), so the tree's cost is priced per model
    ctx.add_usage(**usage)
    update: dict[str, Any] = {}
    for pf, cf in (spec.output_map or {}).items():
        final = getattr(result.state, cf)
        reducer = schema.fields[pf].reducer
        kind = None
        if reducer is not None:
            kind = "append" if reducer.wrap_item else reducer.name
        update[pf] = _contribution(kind, child_input.get(cf, _MISSING), final)
    return update
