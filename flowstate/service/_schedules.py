"""Schedules over HTTP (``/v1/schedules``), and the service's time loop: every second it
fires the due schedules of the graphs it serves and wakes runs whose timer or interrupt
deadline has come (``fire_schedules``, ``wake_due``). Several service processes may run
the loop at once: each firing time still starts one run, each due run is woken once."""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from flowstate.checkpoints import ScheduleRecord, TimerStore
from flowstate.engine import CompiledGraph, add_schedule, fire_schedules, wake_due
from flowstate.errors import InputRejected, ScheduleError, ScheduleNotFound

from ._http import ApiError

__all__ = ["TimeLoop", "add_schedule_routes"]

log = logging.getLogger("flowstate.service")

SCHEDULE_NAME = r"^[A-Za-z0-9_.:-]{1,100}$"
GRAPH_DOC = "A graph this service serves."
ScheduleName = Annotated[str, Path(pattern=SCHEDULE_NAME, description="The schedule's name.")]


class CreateSchedule(BaseModel):
    """A schedule: a run of ``graph`` with ``input`` at every time ``cron`` names."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SCHEDULE_NAME, description="Unique schedule name.")
    graph: str = Field(min_length=1, max_length=200, description="A graph this service serves.")
    cron: str = Field(
        min_length=1, max_length=200, description='Five-field cron, e.g. "0 7 * * 1-5".'
    )
    input: dict[str, Any] = Field(default_factory=dict, description="Input of each run.")
    catchup: Literal["skip", "all", "latest"] = Field(
        "skip", description="Firings missed while no scheduler ran: skip, all or latest."
    )
    tz: str = Field("UTC", min_length=1, max_length=64, description="IANA time zone.")


class ScheduleInfo(BaseModel):
    name: str
    graph: str
    cron: str
    tz: str
    input: str = Field(description="The input of each run, as JSON.")
    catchup: Literal["skip", "all", "latest"]
    paused: bool
    next_fire: float = Field(description="Next firing time (Unix seconds).")
    created_at: float
    updated_at: float


def _info(s: ScheduleRecord) -> ScheduleInfo:
    return ScheduleInfo.model_validate(s.model_dump())


def add_schedule_routes(
    app: FastAPI,
    *,
    store: Any,
    graphs: Mapping[str, CompiledGraph[Any]],
    secured: list[Any],
    errors: Callable[..., dict[int | str, dict[str, Any]]],
    writable: Callable[[], None],
    strict: Callable[[type[BaseModel], bytes], Any],
) -> None:
    """``/v1/schedules``: list, create, get, pause, resume, delete."""
    timers: TimerStore = store
    # the graph is one of the served names, as in create_task: the schema lists them
    graph_type: Any = Literal[tuple(graphs)] if graphs else str
    Create = create_model(
        "CreateSchedule",
        __base__=CreateSchedule,
        graph=(graph_type, Field(description=GRAPH_DOC)),
    )

    links = {
        name: {"operationId": op, "parameters": {"name": "$response.body#/name"}}
        for name, op in (
            ("GetSchedule", "get_schedule"),
            ("PauseSchedule", "pause_schedule"),
            ("ResumeSchedule", "resume_schedule"),
            ("DeleteSchedule", "delete_schedule"),
        )
    }

    def found(name: str) -> ScheduleRecord:
        try:
            return timers.get_schedule(name)
        except ScheduleNotFound as e:
            raise ApiError(404, e.message, code=e.code) from None

    @app.get(
        "/v1/schedules",
        response_model=list[ScheduleInfo],
        operation_id="list_schedules",
        summary="List the schedules",
        dependencies=secured,
        responses=errors(503),
    )
    async def list_schedules() -> list[ScheduleInfo]:
        return [_info(s) for s in timers.list_schedules()]

    @app.post(
        "/v1/schedules",
        status_code=201,
        response_model=ScheduleInfo,
        operation_id="create_schedule",
        summary="Add a schedule",
        dependencies=secured,
        responses={
            201: {"description": "The schedule is stored.", "links": links},
            **errors(400, 409, 413, 422, 503),
        },
    )
    async def create_schedule(body: Create, request: Request) -> ScheduleInfo:  # type: ignore[valid-type]
        writable()
        req: CreateSchedule = strict(Create, await request.body())
        graph = graphs.get(req.graph)
        if graph is None:
            raise ApiError(
                422, f"graph {req.graph!r} is not served here; served: {', '.join(graphs)}"
            )
        try:
            rec = add_schedule(
                graph, req.name, cron=req.cron, input=req.input, catchup=req.catchup, tz=req.tz
            )
        except InputRejected as e:
            raise ApiError(422, e.message, code=e.code) from None
        except ScheduleError as e:
            status = 409 if "exists already" in e.message else 422
            raise ApiError(status, e.message, code=e.code) from None
        return _info(rec)

    @app.get(
        "/v1/schedules/{name}",
        response_model=ScheduleInfo,
        operation_id="get_schedule",
        summary="A schedule",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def get_schedule(name: ScheduleName) -> ScheduleInfo:
        return _info(found(name))

    @app.post(
        "/v1/schedules/{name}/pause",
        response_model=ScheduleInfo,
        operation_id="pause_schedule",
        summary="Stop firing a schedule",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def pause_schedule(name: ScheduleName) -> ScheduleInfo:
        writable()
        found(name)
        return _info(timers.update_schedule(name, paused=True))

    @app.post(
        "/v1/schedules/{name}/resume",
        response_model=ScheduleInfo,
        operation_id="resume_schedule",
        summary="Fire a paused schedule again (missed firings follow its catch-up policy)",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def resume_schedule(name: ScheduleName) -> ScheduleInfo:
        writable()
        found(name)
        return _info(timers.update_schedule(name, paused=False))

    @app.delete(
        "/v1/schedules/{name}",
        status_code=204,
        response_class=Response,
        operation_id="delete_schedule",
        summary="Delete a schedule (the runs it started stay)",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def delete_schedule(name: ScheduleName) -> Response:
        writable()
        found(name)
        with contextlib.suppress(ScheduleNotFound):  # deleted meanwhile: the same outcome
            timers.delete_schedule(name)
        return Response(status_code=204)


class TimeLoop:
    """The service's background loop: fire due schedules, wake due runs, every ``poll``
    seconds (real time; due-ness is the clock's)."""

    def __init__(
        self,
        store: Any,
        graphs: Mapping[str, CompiledGraph[Any]],
        submit: Callable[[str, str], object],
        poll: float = 1.0,
    ) -> None:
        self.store, self.graphs, self.poll = store, graphs, poll
        self.submit = submit
        """Hands a fired (queued) run to the service's executor: ``submit(run_id, graph)``."""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if isinstance(self.store, TimerStore):
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for run_id in await fire_schedules(self.store, self.graphs, execute=False):
                    run = self.store.get_run(run_id)
                    self.submit(run_id, run.graph)
                await wake_due(self.store, self.graphs)
            except Exception:  # a store hiccup must not end the loop: log, look again
                log.exception("the time loop failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
