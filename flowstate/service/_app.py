"""``create_app``: the FastAPI task service over one checkpoint store.

No ``from __future__ import annotations`` here: the routes are closures over per-app
types (the create-task body, the task id), which FastAPI must see as real objects.
"""

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, get_args

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ValidationError

from flowstate import events as ev
from flowstate.checkpoints import Durability, open_store
from flowstate.engine import CompiledGraph, GraphBuilder, StreamMode
from flowstate.errors import StoreError
from flowstate.events import EventAdapter

from ._fleet import FleetTaskService
from ._http import PROBLEM, ApiError, Guard, install_handlers
from ._inspect import RunInspector
from ._inspect_routes import READ_ONLY_DETAIL, add_inspector_routes
from ._models import (
    GRAPH_NAME_PATTERN,
    TASK_ID_PATTERN,
    GraphInfo,
    Health,
    Problem,
    ResumeTask,
    TaskDetail,
    TaskPage,
    TaskRef,
    TaskStatus,
    create_task_model,
)
from ._paging import CURSOR_PATTERN
from ._registry import GraphRegistry
from ._schedules import TimeLoop, add_schedule_routes
from ._service import TaskService
from ._threads import add_thread_routes

__all__ = ["create_app"]

DESCRIPTION = """\
Run the registered flowstate graphs as durable tasks.

A task is a run in the checkpoint store: accepted tasks are committed before the 202,
every node activation is checkpointed, and a restarted server resumes unfinished tasks
from their last commit. Clients choose a graph by name; they never send code.
Errors are RFC 7807 problem documents (`application/problem+json`).
"""

_DESCRIPTIONS = {
    400: "The request is malformed: a body that is not UTF-8 JSON, or a cursor this "
    "server did not hand out.",
    401: "A bearer token is required, or the one sent is not valid.",
    403: "This server is a read-only inspector, or the request came from another origin.",
    404: "No task with this id.",
    409: "The task's status does not allow the operation, or the idempotency key names "
    "another request.",
    413: "The request body is larger than the server's limit.",
    422: "The request does not fit its schema; `errors` names each field.",
    503: "The checkpoint store is unreachable.",
}


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event (the schema of each event, OpenAPI 3.1 style).",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "type": "string",
            "description": "The engine event's kind.",
            "enum": sorted(m.model_fields["kind"].default for m in get_args(get_args(ev.Event)[0])),
        },
        "data": {
            "type": "string",
            "description": "The event as JSON.",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/Event"},
        },
        "id": {"type": "string", "description": "For Last-Event-ID: '<execution>:<index>'."},
    },
}


TaskId = Annotated[
    str, Path(pattern=TASK_ID_PATTERN, description="The task id returned at creation.")
]
"""A task id in a URL path."""


def create_app(
    graphs: Mapping[str, CompiledGraph[Any] | GraphBuilder[Any]] | GraphRegistry,
    *,
    db: str,
    token: str | None = None,
    max_concurrent_runs: int = 8,
    task_timeout: float | None = None,
    max_body_bytes: int = 1_048_576,
    durability: Durability = "normal",
    ui: bool = True,
    read_only: bool = False,
    enqueue_only: bool = False,
    queue: str = "default",
    store_probe_seconds: float = 5.0,
) -> FastAPI:
    """The task service for ``graphs`` (the allow-list), all bound to the store at ``db``.

    ``token``: require ``Authorization: Bearer <token>`` on everything but /health and
    /ready. ``max_concurrent_runs``: tasks executing at once; the others wait ``queued``.
    ``task_timeout``: seconds a task may execute before it is cancelled with reason
    ``timeout``. ``max_body_bytes``: larger request bodies get 413. ``ui``: serve the
    run inspector under /ui. ``read_only``: execute nothing (no recovery at startup; every
    action answers 403); ``graphs`` may then be empty (``flowstate ui`` without --graphs).
    ``enqueue_only``: execute nothing here; tasks go on the run queue ``queue`` of a
    PostgreSQL store or an SQLite file, for ``flowstate worker`` processes
    (``FleetTaskService``).
    ``store_probe_seconds``: how often a small write probes the store's health (``/ready``
    answers 503 while writes fail; tasks a storage fault stopped resume once one passes).
    """
    registry = graphs if isinstance(graphs, GraphRegistry) else GraphRegistry(graphs)
    if not registry and not read_only:
        raise ValueError("create_app needs at least one graph to serve")
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be positive, not {max_body_bytes}")
    store = open_store(db, durability=durability)  # a path or a postgresql:// URL
    bound = registry.bind(store)
    if enqueue_only:
        service: TaskService = FleetTaskService(
            bound, store, queue=queue, max_concurrent_runs=max_concurrent_runs
        )
    else:
        service = TaskService(
            bound,
            store,
            max_concurrent_runs=max_concurrent_runs,
            task_timeout=task_timeout,
            probe_seconds=store_probe_seconds,
        )
    names = list(bound)
    inspector = RunInspector(store, bound)
    service.stats = inspector.stats

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if read_only:
            service.started = True  # serves reads only: nothing is resumed or executed
            yield
            return
        await service.start()
        clock_loop = TimeLoop(
            store, bound, lambda run_id, g: service._schedule(run_id, bound[g], fresh=False)
        )
        clock_loop.start()
        try:
            yield
        finally:
            await clock_loop.stop()
            await service.stop()

    app = FastAPI(
        title="flowstate task service",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.store = store

    secured: list[Any] = []
    if token:
        bearer = HTTPBearer(auto_error=False, description="Set by the operator (FLOWSTATE_TOKEN).")
        secured = [Depends(bearer)]

    def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
        out: dict[int | str, dict[str, Any]] = {
            c: {"model": Problem, "description": _DESCRIPTIONS[c]} for c in codes
        }
        if token:
            out[401] = {"model": Problem, "description": _DESCRIPTIONS[401]}
        return out

    links = {
        name: {"operationId": op, "parameters": {"task_id": "$response.body#/id"}}
        for name, op in (
            ("GetTask", "get_task"),
            ("CancelTask", "cancel_task"),
            ("ResumeTask", "resume_task"),
            ("TaskEvents", "task_events"),
            ("PauseTask", "pause_task"),
            ("ForkTask", "fork_task"),
            ("ReplayTask", "replay_task"),
        )
    }
    links.update(
        {
            name: {"operationId": op, "parameters": {"run_id": "$response.body#/id"}}
            for name, op in (
                ("TaskOverview", "task_overview"),
                ("TaskHistory", "task_history"),
                ("TaskState", "task_state"),
            )
        }
    )

    def writable() -> None:
        if read_only:
            raise ApiError(403, READ_ONLY_DETAIL, title="Read-only inspector")

    CreateTask = (
        create_task_model({n: bound[n].state_model for n in names}) if not read_only else None
    )

    if CreateTask is not None:  # a read-only inspector may serve no graph

        @app.post(
            "/v1/tasks",
            status_code=202,
            response_model=TaskRef,
            operation_id="create_task",
            summary="Start a task",
            dependencies=secured,
            responses={
                202: {"description": "Accepted: the task is stored and queued.", "links": links},
                200: {
                    "model": TaskRef,
                    "description": "The idempotency key names an existing task; it is returned.",
                    "links": links,
                },
                **errors(400, 409, 413, 422, 503),
            },
        )
        async def create_task(body: CreateTask, request: Request, response: Response) -> TaskRef:  # type: ignore[valid-type]
            req = _strict(CreateTask, await request.body()).root
            run, created = await service.submit(
                req.graph,
                req.input,
                max_steps=req.max_steps,
                idempotency_key=req.idempotency_key,
            )
            if not created:
                response.status_code = 200
            return TaskRef(id=run.id, status=run.status)

    @app.get(
        "/v1/tasks",
        response_model=TaskPage,
        operation_id="list_tasks",
        summary="List tasks, newest first",
        dependencies=secured,
        responses=errors(400, 422, 503),
    )
    async def list_tasks(
        status: Annotated[TaskStatus | None, Query(description="Only this status.")] = None,
        graph: Annotated[
            str | None, Query(pattern=GRAPH_NAME_PATTERN, description="Only this graph.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
        cursor: Annotated[
            str | None,
            Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page."),
        ] = None,
        since: Annotated[
            float | None,
            Query(ge=0, le=1e11, description="Only tasks created at or after (Unix seconds)."),
        ] = None,
        until: Annotated[
            float | None,
            Query(ge=0, le=1e11, description="Only tasks created before (Unix seconds)."),
        ] = None,
    ) -> TaskPage:
        return service.page(
            status=status, graph=graph, limit=limit, cursor=cursor, since=since, until=until
        )

    @app.get(
        "/v1/tasks/{task_id}",
        response_model=TaskDetail,
        operation_id="get_task",
        summary="A task: status, state, committed steps, pending interrupts",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def get_task(task_id: TaskId) -> TaskDetail:
        return service.detail(task_id)

    @app.post(
        "/v1/tasks/{task_id}/cancel",
        response_model=TaskRef,
        operation_id="cancel_task",
        summary="Cancel a task; answers once it has stopped",
        dependencies=secured,
        responses=errors(404, 409, 422, 503),
    )
    async def cancel_task(task_id: TaskId) -> TaskRef:
        writable()
        run = await service.cancel(task_id)
        return TaskRef(id=run.id, status=run.status)

    @app.post(
        "/v1/tasks/{task_id}/resume",
        status_code=202,
        response_model=TaskRef,
        operation_id="resume_task",
        summary="Resume a paused, failed or cancelled task, answering its interrupts by id",
        dependencies=secured,
        responses=errors(400, 404, 409, 413, 422, 503),
    )
    async def resume_task(
        task_id: TaskId, request: Request, body: ResumeTask | None = None
    ) -> TaskRef:
        writable()
        raw = (await request.body()).strip()
        if raw and raw != b"null":
            body = _strict(ResumeTask, raw)
        answer = body is not None and "value" in body.model_fields_set
        await service.settled(task_id)
        run = service.resume(
            task_id,
            value=body.value if body is not None else None,
            answer=answer,
            answers=body.answers if body is not None else None,
            max_steps=body.max_steps if body is not None else None,
            update=body.update if body is not None else None,
            goto=body.goto if body is not None else None,
            rerun_step=body.rerun_step if body is not None else False,
        )
        return TaskRef(id=run.id, status=run.status)

    @app.get(
        "/v1/tasks/{task_id}/events",
        response_class=EventStream,
        operation_id="task_events",
        summary="Server-sent events of the task, in order, ending with run_finished",
        dependencies=secured,
        responses={
            200: {
                "description": "`text/event-stream`: one event per engine event (`event:` is "
                "its kind, `data:` its JSON, `id:` for Last-Event-ID), ending with "
                "run_finished. A finished task whose events are no longer held replays "
                "its final status only.",
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
            },
            **errors(404, 422, 503),
        },
    )
    async def task_events(
        task_id: TaskId,
        last_event_id: Annotated[
            str | None,
            Header(max_length=64, description="Resume the stream after this event id."),
        ] = None,
        mode: Annotated[
            list[StreamMode] | None,
            Query(
                max_length=4,
                description="What the stream carries (repeatable; default: every event): "
                "`values` (step_finished with the state after the step), `updates` "
                "(node_finished), `tokens` (LLM text), `events` (all). run_started and "
                "run_finished always come.",
            ),
        ] = None,
    ) -> EventStream:
        service.get_run(task_id)  # 404 before the stream starts
        return EventStream(
            service.events(task_id, last_event_id, mode),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/v1/graphs",
        response_model=list[GraphInfo],
        operation_id="list_graphs",
        summary="The graphs this server runs, with their input schemas",
        dependencies=secured,
        responses=errors(),
    )
    async def list_graphs() -> list[GraphInfo]:
        return [
            GraphInfo(
                name=n,
                nodes=sorted(bound[n].ir.nodes),
                input_schema=bound[n].state_model.model_json_schema(),
            )
            for n in names
        ]

    @app.get("/health", response_model=Health, operation_id="health", summary="Liveness")
    async def health() -> Health:
        return Health(status="ok")

    @app.get(
        "/ready",
        response_model=Health,
        operation_id="ready",
        summary="Readiness: started, and the checkpoint store accepts writes",
        responses={503: {"model": Problem, "description": _DESCRIPTIONS[503]}},
    )
    async def ready() -> Health:
        if not service.started:
            raise ApiError(503, "the service is starting")
        if service.recovery_error:
            raise ApiError(503, service.recovery_error)
        health = service.health
        if health.error is not None and not read_only:
            waiting = len(health.orphans)
            raise ApiError(
                503,
                f"the checkpoint store fails writes: {health.error}; probing it every few "
                f"seconds, {waiting} task(s) stopped by the fault resume once a write passes",
            )
        try:
            store.signals("")  # a read that decodes no row: reachability, not integrity
        except StoreError:
            raise ApiError(503, "the checkpoint store is unreachable") from None
        return Health(status="ok")

    add_schedule_routes(
        app,
        store=store,
        graphs=bound,
        secured=secured,
        errors=errors,
        writable=writable,
        strict=_strict,
    )
    if not read_only:
        add_thread_routes(
            app,
            service=service,
            secured=secured,
            errors=errors,
            writable=writable,
            strict=_strict,
        )
    add_inspector_routes(
        app,
        service=service,
        inspector=inspector,
        secured=secured,
        errors=errors,
        read_only=read_only,
    )
    install_handlers(app, names)
    app.add_middleware(Guard, token=token, max_body_bytes=max_body_bytes)
    if ui:
        from .ui import InspectorGate

        app.add_middleware(InspectorGate, token=token)
    app.openapi = _openapi(app)
    return app


def _strict(model: type[BaseModel], raw: bytes) -> Any:
    """Validate the raw JSON body against the published schema, not pydantic's lax mode:
    ``"5"`` is not an integer and ``1`` is not a string. Strict mode goes one step further
    than JSON Schema, for which ``207.0`` *is* an integer: a body whose only strict errors
    are such numbers is validated again in lax mode, which converts exactly those."""
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as e:
        errors = e.errors()
    if all(_integral_number(err) for err in errors):
        try:
            return model.model_validate_json(raw)
        except ValidationError as e:
            errors = e.errors()
    raise RequestValidationError([{**err, "loc": ("body", *err.get("loc", ()))} for err in errors])


def _integral_number(err: Any) -> bool:
    value = err.get("input")
    return err.get("type") == "int_type" and isinstance(value, float) and value.is_integer()


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for item in schema.get("paths", {}).values():
            for op in item.values():
                for code, resp in op.get("responses", {}).items():
                    content = resp.get("content")
                    if str(code).isdigit() and int(code) >= 400 and content:
                        # FastAPI files error models under the route's media type
                        # (text/event-stream for /events); errors are problem documents
                        resp["content"] = {PROBLEM: next(iter(content.values()))}
        events = EventAdapter.json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(events.pop("$defs", {}))
        components["Event"] = events
        app.openapi_schema = schema
        return schema

    return build
