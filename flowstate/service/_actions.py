"""Task actions the inspector added to the service: pause, fork, replay.

They sit beside ``TaskService`` (cancel and resume live there) and use its executions:
a fork is admitted durably with status ``queued`` (``CompiledGraph.admit_fork``) and then
scheduled like any new task, so it waits for a slot and survives a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowstate.checkpoints import RunRecord
from flowstate.engine import CompiledGraph
from flowstate.errors import UpdateRejected

from ._http import ApiError
from ._inspect_models import ReplayOutcome
from ._service import TaskService

__all__ = ["PAUSE_WAIT_SECONDS", "fork_task", "pause_task", "replay_task"]

PAUSE_WAIT_SECONDS = 10.0
"""How long a pause request waits for the run to reach a node boundary and stop."""


def _graph(service: TaskService, run: RunRecord) -> CompiledGraph[Any]:
    graph = service.graphs.get(run.graph)
    if graph is None:
        raise ApiError(
            409, f"task {run.id} runs graph '{run.graph}', which this server does not serve"
        )
    return graph


async def pause_task(service: TaskService, run_id: str) -> RunRecord:
    """Ask a running task to stop at its next node boundary; answers once it has stopped
    (or after ``PAUSE_WAIT_SECONDS``, still ``running`` with the request pending)."""
    run = service.store.get_run(run_id)
    if run.status != "running":
        raise ApiError(
            409,
            f"task {run_id} is {run.status}; only a running task can be paused"
            + (" (a queued task can be cancelled)" if run.status == "queued" else ""),
        )
    graph = service.graphs.get(run.graph)
    if graph is not None:
        graph.pause(run_id)
    else:  # executed by another process: it sees the request at its next node boundary
        service.store.send_signal(run_id, "pause")
    x = service._live.get(run_id)
    if x is not None and x.task is not None:
        await asyncio.wait({x.task}, timeout=PAUSE_WAIT_SECONDS)
    return service.store.get_run(run_id)


def fork_task(
    service: TaskService, run_id: str, *, at: int, update: dict[str, Any] | None
) -> RunRecord:
    """Admit a fork of the task at step ``at`` with ``update`` applied, and queue it."""
    run = service.store.get_run(run_id)
    graph = _graph(service, run)
    try:
        new = graph.admit_fork(run_id, at=at, update=update)
    except UpdateRejected as e:
        raise ApiError(
            422,
            f"body.update: {e.message}",
            code=e.code,
            errors=[{"loc": ["body", "update"], "msg": e.message[:500], "type": "update"}],
        ) from None
    if new.status == "queued":
        service._schedule(new.id, graph, fresh=True)
    return new


async def replay_task(service: TaskService, run_id: str) -> ReplayOutcome:
    """Replay the recorded task offline (every effect from its journal) and report."""
    run = service.store.get_run(run_id)
    graph = _graph(service, run)
    report = await graph.replay(run_id, raise_on_divergence=False)
    d = report.first_divergence
    return ReplayOutcome(
        run_id=report.run_id,
        identical=report.identical,
        activations=report.activations,
        recorded_status=report.recorded_status,
        replay_status=report.replay_status,
        summary=report.summary(),
        first_divergence=d.model_dump(mode="json") if d is not None else None,
    )
