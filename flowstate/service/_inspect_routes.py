"""The inspector's endpoints on the task API: a run's overview, history (the paged
timeline), the state at a step, an activation's effects; and the actions pause, fork and
replay. The inspector page uses only these and the task endpoints, with the same auth,
validation and problem documents as any other client.

No ``from __future__ import annotations``: FastAPI must see the annotations as objects.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request

from ._actions import fork_task, pause_task, replay_task
from ._editing import edit_task
from ._http import ApiError
from ._inspect import RunInspector
from ._inspect_models import (
    EditTaskState,
    EffectsPage,
    ForkTask,
    ReplayOutcome,
    RunOverview,
    StateAtStep,
    TimelinePage,
)
from ._models import TASK_ID_PATTERN, TaskRef
from ._service import TaskService

__all__ = ["READ_ONLY_DETAIL", "RUN_PATH_PATTERN", "add_inspector_routes"]

RUN_PATH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}(/[0-9]{1,9}/[^/\s]{1,200}){0,16}$"
"""A task id, or the id of one of its subgraph runs (``<task>/<step>/<task path>``)."""

READ_ONLY_DETAIL = (
    "this inspector is read-only: it has no graph code to run (graph code is never "
    "loaded from the database); start it with `flowstate ui --db ... --graphs "
    "module:REGISTRY`, or use `flowstate serve`"
)

MAX_TIMELINE_STEPS = 500

RunPath = Annotated[
    str,
    Path(
        pattern=RUN_PATH_PATTERN,
        description="A task id, or a subgraph run of it: '<task>/<step>/<task path>'.",
    ),
]
TaskId = Annotated[
    str, Path(pattern=TASK_ID_PATTERN, description="The task id returned at creation.")
]


def add_inspector_routes(
    app: FastAPI,
    *,
    service: TaskService,
    inspector: RunInspector,
    secured: list[Any],
    errors: Callable[..., dict[int | str, dict[str, Any]]],
    read_only: bool = False,
) -> None:
    """Register the inspector endpoints on ``app`` (``read_only``: actions answer 403)."""

    @app.get(
        "/v1/tasks/{run_id:path}/overview",
        response_model=RunOverview,
        operation_id="task_overview",
        summary="A run at a glance: the graph drawn with node statuses and visit counts, "
        "usage and cost, interrupts, forks and subgraph runs",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def task_overview(run_id: RunPath) -> RunOverview:
        return inspector.overview(run_id)

    @app.get(
        "/v1/tasks/{run_id:path}/history",
        response_model=TimelinePage,
        operation_id="task_history",
        summary="Committed activations of a page of steps: node, start, duration, "
        "attempts, tokens, effects",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def task_history(
        run_id: RunPath,
        start: Annotated[int, Query(ge=0, le=100_000_000, description="First step.")] = 0,
        limit: Annotated[
            int, Query(ge=1, le=MAX_TIMELINE_STEPS, description="Steps per page.")
        ] = 100,
    ) -> TimelinePage:
        return inspector.timeline(run_id, start, limit)

    @app.get(
        "/v1/tasks/{run_id:path}/state",
        response_model=StateAtStep,
        operation_id="task_state",
        summary="The state at the start of a step, and the diff from the previous step",
        dependencies=secured,
        responses=errors(404, 409, 422, 503),
    )
    async def task_state(
        run_id: RunPath,
        step: Annotated[int, Query(ge=0, le=100_000_000, description="The step (0: input).")],
    ) -> StateAtStep:
        return inspector.state(run_id, step)

    @app.get(
        "/v1/tasks/{run_id:path}/effects",
        response_model=EffectsPage,
        operation_id="task_effects",
        summary="The effects journal of one activation: requests and results in order",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def task_effects(
        run_id: RunPath,
        step: Annotated[int, Query(ge=0, le=100_000_000)],
        task_path: Annotated[str, Query(min_length=1, max_length=300)],
    ) -> EffectsPage:
        return inspector.effects(run_id, step, task_path)

    def _writable() -> None:
        if read_only:
            raise ApiError(403, READ_ONLY_DETAIL, title="Read-only inspector")

    @app.post(
        "/v1/tasks/{task_id}/pause",
        status_code=202,
        response_model=TaskRef,
        operation_id="pause_task",
        summary="Pause a running task at its next node boundary; answers once it stopped",
        dependencies=secured,
        responses=errors(403, 404, 409, 422, 503),
    )
    async def pause(task_id: TaskId) -> TaskRef:
        _writable()
        run = await pause_task(service, task_id)
        return TaskRef(id=run.id, status=run.status)

    @app.post(
        "/v1/tasks/{task_id}/fork",
        status_code=202,
        response_model=TaskRef,
        operation_id="fork_task",
        summary="Start a new task from the state at a step, patched; linked to its parent",
        dependencies=secured,
        responses=errors(400, 403, 404, 409, 413, 422, 503),
    )
    async def fork(task_id: TaskId, body: ForkTask, request: Request) -> TaskRef:
        _writable()
        from ._app import _strict  # the create/resume bodies' strict JSON check

        body = _strict(ForkTask, await request.body())
        run = fork_task(service, task_id, at=body.at, update=body.update)
        return TaskRef(id=run.id, status=run.status)

    @app.post(
        "/v1/tasks/{task_id}/edit",
        response_model=TaskRef,
        operation_id="update_task_state",
        summary="Edit a stopped task's state in place, recorded and replayed (update_state)",
        dependencies=secured,
        responses=errors(400, 403, 404, 409, 413, 422, 503),
    )
    async def update_state(task_id: TaskId, body: EditTaskState, request: Request) -> TaskRef:
        _writable()
        from ._app import _strict

        body = _strict(EditTaskState, await request.body())
        await service.settled(task_id)
        run = edit_task(service, task_id, body.values, as_node=body.as_node, by=body.by)
        return TaskRef(id=run.id, status=run.status)

    @app.post(
        "/v1/tasks/{task_id}/replay",
        response_model=ReplayOutcome,
        operation_id="replay_task",
        summary="Replay the task offline from its journal and report the first divergence",
        dependencies=secured,
        responses=errors(403, 404, 409, 422, 503),
    )
    async def replay(task_id: TaskId) -> ReplayOutcome:
        _writable()
        return await replay_task(service, task_id)
