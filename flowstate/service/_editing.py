"""Editing and watching a task's state over HTTP (issue 19): resume's ``update``/``goto``
and the event stream's ``mode`` selection."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowstate.checkpoints import RunRecord
from flowstate.engine import CompiledGraph, stream_kinds
from flowstate.errors import EditRefused, RouteError, RunStateError, UpdateRejected

from ._http import ApiError

if TYPE_CHECKING:
    from ._service import TaskService

__all__ = ["StreamPick", "edit_before_resume", "edit_task"]


def edit_before_resume(
    graph: CompiledGraph[Any],
    run_id: str,
    update: dict[str, Any] | None,
    goto: list[str] | None,
    answering: bool,
    rerun_step: bool = False,
) -> None:
    """Resume's ``update``/``goto``: the edit is stored (``update_state``) before the task
    is queued, so a crash before a slot frees keeps it. With ``rerun_step`` the head
    step's committed writes are superseded first (as the engine's resume does), so the
    edit is the input of the step that runs again."""
    if goto and answering:
        raise ApiError(
            409,
            f"goto={goto} drops the activations waiting for the answer given; answer "
            "first, then resume with goto",
            code=EditRefused.code,
        )
    try:
        if rerun_step:
            graph.store.supersede_writes(run_id, graph.get_run(run_id).head_step)
        graph.update_state(run_id, update or {}, goto=goto)
    except (UpdateRejected, RouteError) as e:
        raise ApiError(422, e.message, code=e.code) from None
    except RunStateError as e:  # EditRefused, EditWhileRunning
        raise ApiError(409, e.message, code=e.code) from None


def edit_task(
    service: TaskService,
    run_id: str,
    values: dict[str, Any],
    *,
    as_node: str | None,
    by: str | None,
) -> RunRecord:
    """``POST /v1/tasks/{id}/state``: ``update_state`` on a task this server serves. A
    queued task may be edited (its execution reads the edit); one being executed is
    refused (409, FS221)."""
    run = service.store.get_run(run_id)
    graph = service.graphs.get(run.graph)
    if graph is None:
        raise ApiError(
            409, f"task {run_id} runs graph '{run.graph}', which this server does not serve"
        )
    try:
        return graph.update_state(run_id, values, as_node, by=by)
    except (UpdateRejected, RouteError) as e:
        raise ApiError(422, e.message, code=e.code) from None
    except RunStateError as e:  # EditRefused, EditWhileRunning, GraphMismatch's kin
        raise ApiError(409, e.message, code=e.code) from None


class StreamPick:
    """Which logged events a stream passes on (``?mode=``), and with ``values`` the state
    after each step, rebuilt from the store (``state_at``) when it is streamed: the
    engine's hot path serialises nothing for it."""

    def __init__(self, service: TaskService, run_id: str, mode: Sequence[str] | None) -> None:
        self.kinds = stream_kinds(mode) if mode else None
        self.values = bool(mode) and "values" in (mode or ())
        self.service, self.run_id = service, run_id

    def __call__(self, kind: str, data: str) -> str | None:
        """The event's data as streamed, or None to skip it."""
        if self.kinds is not None and kind not in self.kinds:
            return None
        if not (self.values and kind == "step_finished"):
            return data
        doc = json.loads(data)
        run = self.service.store.get_run(self.run_id)
        graph = self.service.graphs.get(run.graph)
        if graph is not None and doc.get("state") is None:
            state = graph.state_at(self.run_id, int(doc["step"]) + 1)
            doc["state"] = state.model_dump(mode="json")
        return json.dumps(doc, separators=(",", ":"))
