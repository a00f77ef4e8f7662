"""Editing a stored run in place (``update_state``, ``resume(update=, goto=)``).

An edit is stored as a write row of a reserved pseudo-activation in the run's head step,
so every reader that folds writes into states (``get_state``, ``state_at``, ``history``,
fork, replay) sees it without a table of its own:

- task path ``__edit__.<n>`` (``__edit__.<n>@<by>`` when the editor is named), ``n`` the
  edit's number in its step from 1; ``seq`` negative, so an edit sorts before the step's
  activations and the edits of one step keep the order they were made in;
- ``node``: the ``as_node`` given, else ``__edit__``; ``update``: the validated update
  (JSON, reducers applied when it is folded in, like any node's update); ``goto``: the
  targets of ``resume(goto=...)``.

Why in the head step rather than in a step of its own: the head step's pending
activations keep their step number, and with it their journaled effects, interrupt rows
and subgraph child runs, all keyed by step. An edit is the head step's *input*: the
activations that run after it read the edited state. So an edit is refused while the
head step holds committed activations (they read the state before it), see
``EditRefused``.

A *plain* edit leaves the step's planned activations as they were. A *routing* edit
(``as_node`` or ``goto``) closes the step on the spot: the step's planned activations are
dropped, and the next step is planned from ``as_node``'s outgoing edges (plus ``goto``),
exactly as if that node had just committed the update.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flowstate.checkpoints import (
    CheckpointStore,
    LeaseStore,
    RunRecord,
    StepRecord,
    WriteRecord,
)
from flowstate.errors import EditRefused, EditWhileRunning, RunOwned

from ._lease import local_owner_alive, new_owner, retire
from ._plan import plan_next
from ._rows import parse
from ._types import END, START, Task

if TYPE_CHECKING:
    from ._app import CompiledGraph
    from ._builder import GraphIR
    from ._inspect import RunReader

__all__ = [
    "EDIT_NODE",
    "Edit",
    "commit_edit",
    "edit_by",
    "is_edit",
    "is_routing_edit",
    "next_step_row",
    "plan_edit",
    "update_state",
]

EDIT_NODE = "__edit__"
"""The node name of an edit given without ``as_node`` (reserved: no node may take it)."""
_SEQ_BASE = -1_000_000
"""Edits of a step take ``seq`` ``_SEQ_BASE + n``: before every activation (seq >= 0)."""


def is_edit(w: WriteRecord) -> bool:
    """Whether a write row is an edit (``update_state``) rather than an activation."""
    return w.task_path.startswith(EDIT_NODE + ".")


def is_routing_edit(w: WriteRecord) -> bool:
    """An edit that closed its step (``as_node`` or ``goto`` given)."""
    return is_edit(w) and (w.node != EDIT_NODE or w.goto != "[]")


def edit_by(w: WriteRecord) -> str | None:
    """Who made the edit, as given to ``update_state(by=...)``."""
    _, _, by = w.task_path.partition("@")
    return by or None


@dataclass
class Edit:
    """An edit applied to a step: the step's new input state, and when the edit routes,
    the next step's tasks and joins."""

    write: WriteRecord
    update: dict[str, Any]
    state: BaseModel
    """The state after the edit (the head step's input, or the closed step's result)."""
    next_tasks: list[Task] | None = None
    """None for a plain edit (the step's tasks stay); the next step's tasks otherwise."""
    next_joins: dict[str, list[str]] | None = None


def check_targets(ir: GraphIR, run_id: str, as_node: str | None, goto: Sequence[str]) -> None:
    """``as_node`` and ``goto`` must name nodes of the graph."""
    known = sorted(ir.nodes)
    if as_node is not None and as_node not in ir.nodes and as_node != START:
        raise EditRefused(
            run_id,
            f"as_node='{as_node}' is not a node of graph '{ir.name}' (nodes: {known}); "
            "pass one of them, or START to route like a new input",
        )
    for g in goto:
        if g not in ir.nodes and g != END:
            raise EditRefused(
                run_id,
                f"goto '{g}' is not a node of graph '{ir.name}' (nodes: {known}); pass one "
                "of them or END",
            )


def plan_edit(
    ir: GraphIR,
    run_id: str,
    step: int,
    state: BaseModel,
    joins: dict[str, list[str]],
    update: dict[str, Any],
    raw: str,
    *,
    n: int,
    as_node: str | None,
    goto: Sequence[str],
    by: str | None,
    now: float,
) -> Edit:
    """Apply a validated update to the input state of ``step`` (no I/O): the write row
    to store, the new state and, for a routing edit, the next step's plan."""
    node = as_node or EDIT_NODE
    path = f"{EDIT_NODE}.{n}" + (f"@{by}" if by else "")
    write = WriteRecord(
        run_id=run_id,
        step=step,
        task_path=path,
        node=node,
        seq=_SEQ_BASE + n,
        update=raw,
        goto=json.dumps(list(goto)),
        started_at=now,
        finished_at=now,
    )
    new_state = ir.schema.apply(state, [(node, update)], step)
    if as_node is None and not goto:
        return Edit(write, update, new_state)
    targets: list[Any] = list(goto)
    if as_node is None:  # goto alone: exactly the targets named
        tasks, next_joins = plan_next(ir, new_state, [(Task(END, END), targets)], joins)
    else:
        tasks, next_joins = plan_next(ir, new_state, [(Task(as_node, as_node), targets)], joins)
    return Edit(write, update, new_state, tasks, next_joins)


def next_step_row(run_id: str, step: int, edit: Edit, now: float) -> StepRecord:
    """The step row a routing edit plans (with a snapshot: the state is known here)."""
    assert edit.next_tasks is not None
    return StepRecord(
        run_id=run_id,
        step=step + 1,
        tasks=json.dumps([t.to_json() for t in edit.next_tasks]),
        joins=json.dumps(edit.next_joins or {}),
        snapshot=edit.state.model_dump_json(),
        created_at=now,
    )


def _live_owner(app: CompiledGraph[Any], run: RunRecord) -> str | None:
    task = app._tasks.get(run.id)
    if task is not None and not task.done():
        return "this process"
    store = app.store
    if isinstance(store, LeaseStore):
        owner, _, until = store.lease(run.id)
        if owner and until is not None and until > time.time():
            if local_owner_alive(owner) is not False:
                return owner
    return None


def update_state(
    app: CompiledGraph[Any],
    run_id: str,
    values: Mapping[str, Any] | BaseModel,
    *,
    as_node: str | None = None,
    goto: Sequence[str] = (),
    by: str | None = None,
) -> RunRecord:
    """Edit run ``run_id`` in place (see the module docstring), holding its lease for the
    edit; returns its new row."""
    store = app.store
    run = store.get_run(run_id)
    app.check_graph(run)
    check_targets(app.ir, run_id, as_node, goto)
    holder = _live_owner(app, run)
    if holder is not None:
        raise EditWhileRunning(
            run_id,
            f"it is being executed by {holder}; pause it first (`app.pause({run_id!r})` or "
            f"`flowstate pause {run_id}`) and edit it once it has stopped",
            owner=holder,
        )
    owner = new_owner()
    epoch = 0
    try:
        if isinstance(store, LeaseStore):
            try:  # held for the edit: a resume elsewhere cannot interleave with it
                epoch = store.acquire(run_id, owner, app.lease_ttl, alive=local_owner_alive)
            except RunOwned as e:
                raise EditWhileRunning(
                    run_id,
                    f"it is being executed by {e.owner}; pause it first and edit it once "
                    "it has stopped",
                    owner=e.owner,
                ) from None
        commit_edit(app.ir, app.reader, store, run_id, values, as_node=as_node, goto=goto, by=by)
        return store.get_run(run_id)
    finally:
        if epoch and isinstance(store, LeaseStore):
            store.release(run_id, owner, epoch)
        retire(owner)


def commit_edit(
    ir: GraphIR,
    reader: RunReader,
    store: CheckpointStore,
    run_id: str,
    values: Mapping[str, Any] | BaseModel,
    *,
    as_node: str | None = None,
    goto: Sequence[str] = (),
    by: str | None = None,
) -> None:
    """Validate and store an edit of the run's head step (the caller holds its lease)."""
    check_targets(ir, run_id, as_node, goto)
    if isinstance(values, BaseModel):
        values = values.model_dump(exclude_unset=True)
    run = store.get_run(run_id)
    head = reader.head(run)
    writes = store.writes(run_id, head.step, head.step + 1)
    done = [w.task_path for w in writes if not is_edit(w)]
    if done and as_node is None and not goto:
        tasks = [t["path"] for t in parse("tasks", head.tasks, "steps", run_id, head.step)]
        pending = [p for p in tasks if p not in done]
        raise EditRefused(
            run_id,
            f"its step {head.step} has committed activations {done} (still to run: "
            f"{pending}), which read the state before any edit. Give the step's outcome "
            f"instead: `update_state({run_id!r}, values, as_node=NODE)` replaces it (the "
            f"committed writes are kept as attempts); or run them again on the edited "
            f"state: `resume({run_id!r}, update=values, rerun_step=True)`; or fork it: "
            f"`fork({run_id!r}, at={head.step}, update=values)`",
        )
    if done:
        # a routing edit replaces the step's outcome: its committed writes leave the step
        # (kept as attempts rows, as resume(rerun_step=True) keeps them); should this
        # process die before the edit commits, the step simply runs again on resume
        store.supersede_writes(run_id, head.step)
        writes = [w for w in writes if is_edit(w)]
    schema = ir.schema
    validator = as_node or EDIT_NODE
    update = schema.validate_update(validator, dict(values), None)
    raw = schema.dump_update(validator, update)
    state = reader.rebuild(run_id, head.step).state
    joins: dict[str, list[str]] = parse("joins", head.joins, "steps", run_id, head.step)
    now = time.time()
    n = sum(1 for w in writes if is_edit(w)) + 1
    edit = plan_edit(
        ir, run_id, head.step, state, joins, update, raw,
        n=n, as_node=as_node, goto=goto, by=by, now=now,
    )  # fmt: skip
    step_row = None
    fields: dict[str, Any] = {}
    if edit.next_tasks is not None:
        step_row = next_step_row(run_id, head.step, edit, now)
        fields["head_step"] = head.step + 1
        if run.status == "completed" and edit.next_tasks:
            fields["status"] = "paused"
            fields["error"] = f"state edited as '{as_node or 'goto'}': resume to continue"
    store.commit(run_id, writes=[edit.write], step=step_row, run_fields=fields or None)
