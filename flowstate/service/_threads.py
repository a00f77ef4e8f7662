"""Threads over HTTP: create a thread with its first message, post a message (a new turn),
read a thread's turns, list threads. Each turn is a task: its events stream from
``/v1/tasks/{id}/events``, and it is cancelled or resumed like any task.

A turn is admitted durably (``CompiledGraph.admit_turn``: stored ``queued``) before the
202. Its execution waits, without holding an execution slot, until every turn ahead of it
has finished; when a turn finishes in this server, the next queued turn of its thread is
started (a restarted server starts them from its recovery, in order).
"""

import json
import uuid
from collections.abc import Callable
from copy import copy
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from flowstate.checkpoints import RunRecord
from flowstate.engine import CompiledGraph
from flowstate.errors import ThreadNotFound

from ._http import ApiError
from ._models import TASK_ID_PATTERN, TaskStatus
from ._service import TaskService

__all__ = ["add_thread_routes"]

_REQUEST = ConfigDict(extra="forbid")

Strategy = Literal["reject", "enqueue", "interrupt"]

ThreadId = Annotated[str, Path(pattern=TASK_ID_PATTERN, description="The thread id.")]


_STRATEGY_DOC = (
    "While the last turn is running, queued, paused or failed: `reject` (409), `enqueue` "
    "(the turn waits for it), `interrupt` (it is cancelled and the new turn starts from its "
    "last commit)."
)


def _partial(state: type[BaseModel]) -> type[BaseModel]:
    """``state`` with every field optional and no default sent: a turn's input."""
    fields: dict[str, Any] = {}
    for name, info in state.model_fields.items():
        f = copy(info)
        f.default, f.default_factory = None, None
        fields[name] = (info.annotation, f)
    return create_model(
        f"{state.__name__}Turn",
        __config__=_REQUEST,
        __doc__=f"Fields of {state.__name__} to apply to the thread's state.",
        **fields,
    )


def _union(variants: list[Any]) -> Any:
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="graph")]  # noqa: UP007


def body_models(states: dict[str, type[BaseModel]]) -> tuple[type[BaseModel], type[BaseModel]]:
    """The create-thread and post-turn bodies for these graphs (one variant per graph)."""
    create, post = [], []
    for name, state in sorted(states.items()):
        graph: Any = Literal[name]  # a Literal of a runtime value
        create.append(
            create_model(
                f"CreateThread_{name}",
                __config__=_REQUEST,
                __doc__=f"Start a thread of graph '{name}' with its first turn.",
                graph=(graph, Field(description="The registered graph the thread runs.")),
                input=(state, Field(description=f"The first turn's input ({state.__name__}).")),
                thread_id=(
                    str | None,
                    Field(
                        default=None,
                        pattern=TASK_ID_PATTERN,
                        description="The thread's id (default: a new random id); 409 if it exists.",
                    ),
                ),
            )
        )
        post.append(
            create_model(
                f"PostTurn_{name}",
                __config__=_REQUEST,
                __doc__=f"A new message for a thread of graph '{name}': its next turn.",
                graph=(graph, Field(description="The thread's graph (409 if it differs).")),
                input=(
                    _partial(state),
                    Field(
                        description="Fields of the state, applied to the last turn's final "
                        "state through the reducers (a list with `append` grows by them)."
                    ),
                ),
                multitask_strategy=(Strategy, Field(default="reject", description=_STRATEGY_DOC)),
            )
        )
    return (
        create_model("CreateThread", __base__=RootModel[_union(create)]),
        create_model("PostTurn", __base__=RootModel[_union(post)]),
    )


class ThreadTurn(BaseModel):
    """A turn of a thread: a task."""

    id: str = Field(description="The task id of the turn (its run id).")
    status: TaskStatus
    thread_id: str
    turn: int = Field(description="Its number on the thread, from 1.")


class TurnDetail(ThreadTurn):
    input: dict[str, Any] = Field(description="What was sent for this turn.")
    error: str | None = None
    created_at: float


class ThreadDetail(BaseModel):
    thread_id: str
    graph: str
    forked_from: str | None = Field(
        default=None, description="The task this thread was forked from, if it is a fork."
    )
    turns: list[TurnDetail]


class ThreadItem(BaseModel):
    thread_id: str
    turns: int
    last_task_id: str
    last_status: TaskStatus
    created_at: float
    last_at: float = Field(description="When its latest turn was created (Unix seconds).")


def _turn(run: RunRecord) -> ThreadTurn:
    return ThreadTurn(
        id=run.id, status=run.status, thread_id=str(run.thread_id), turn=int(run.turn or 0)
    )


def _admit(
    service: TaskService, graph: CompiledGraph[Any], input: Any, thread_id: str, strategy: str
) -> RunRecord:
    run = graph.admit_turn(input, thread_id=thread_id, multitask_strategy=strategy)  # type: ignore[arg-type]
    if run.status == "completed":
        return run
    service._schedule(run.id, graph, fresh=True)
    return run


def add_thread_routes(
    app: FastAPI,
    *,
    service: TaskService,
    secured: list[Any],
    errors: Callable[..., dict[int | str, dict[str, Any]]],
    writable: Callable[[], None],
    strict: Callable[[type[BaseModel], bytes], Any],
) -> None:
    """The /v1/threads routes; ``strict`` validates a raw body against its schema."""
    CreateThread, PostTurn = body_models(
        {name: g.state_model for name, g in service.graphs.items()}
    )
    link = {
        "TurnEvents": {
            "operationId": "task_events",
            "parameters": {"task_id": "$response.body#/id"},
        }
    }

    def graph_of(name: str) -> CompiledGraph[Any]:
        graph = service.graphs.get(name)
        if graph is None:
            raise ApiError(
                422,
                f"this server runs no graph {name!r} (GET /v1/graphs lists them)",
                errors=[{"loc": ["body", "graph"], "msg": "unknown graph", "type": "enum"}],
            )
        return graph

    @app.post(
        "/v1/threads",
        status_code=202,
        response_model=ThreadTurn,
        operation_id="create_thread",
        summary="Start a thread with its first turn",
        dependencies=secured,
        responses={
            202: {"description": "Accepted: turn 1 is stored.", "links": link},
            **errors(400, 409, 413, 422, 503),
        },
    )
    async def create_thread(body: CreateThread, request: Request) -> ThreadTurn:  # type: ignore[valid-type]
        writable()
        body = strict(CreateThread, await request.body()).root
        graph = graph_of(body.graph)
        thread_id = body.thread_id or uuid.uuid4().hex[:16]
        if service.store.thread_runs(thread_id):
            raise ApiError(
                409,
                f"thread {thread_id!r} exists: post a message to /v1/threads/{thread_id}/turns",
            )
        return _turn(_admit(service, graph, body.input, thread_id, "reject"))

    @app.post(
        "/v1/threads/{thread_id}/turns",
        status_code=202,
        response_model=ThreadTurn,
        operation_id="post_turn",
        summary="Post a message: the thread's next turn",
        dependencies=secured,
        responses={
            202: {"description": "Accepted: the turn is stored.", "links": link},
            **errors(400, 404, 409, 413, 422, 503),
        },
    )
    async def post_turn(thread_id: ThreadId, body: PostTurn, request: Request) -> ThreadTurn:  # type: ignore[valid-type]
        writable()
        body = strict(PostTurn, await request.body()).root
        runs = service.store.thread_runs(thread_id)
        if not runs:
            raise ThreadNotFound(thread_id)
        if runs[0].graph != body.graph:
            raise ApiError(
                409,
                f"thread {thread_id!r} runs graph {runs[0].graph!r}, not {body.graph!r}",
            )
        graph = graph_of(body.graph)
        update = body.input.model_dump(exclude_unset=True)
        return _turn(_admit(service, graph, update, thread_id, body.multitask_strategy))

    @app.get(
        "/v1/threads/{thread_id}",
        response_model=ThreadDetail,
        operation_id="get_thread",
        summary="A thread and its turns",
        dependencies=secured,
        responses=errors(404, 422, 503),
    )
    async def get_thread(thread_id: ThreadId) -> ThreadDetail:
        runs = service.store.thread_runs(thread_id)
        if not runs:
            raise ThreadNotFound(thread_id)
        turns = []
        for r in runs:
            t = _turn(r)
            data = json.loads(r.input)
            turns.append(
                TurnDetail(
                    **t.model_dump(),
                    input=data if isinstance(data, dict) else {},
                    error=r.error,
                    created_at=r.created_at,
                )
            )
        return ThreadDetail(
            thread_id=thread_id, graph=runs[0].graph, forked_from=runs[0].parent_id, turns=turns
        )

    @app.get(
        "/v1/threads",
        response_model=list[ThreadItem],
        operation_id="list_threads",
        summary="Threads, latest turn first",
        dependencies=secured,
        responses=errors(422, 503),
    )
    async def list_threads(
        limit: Annotated[int, Query(ge=1, le=500, description="How many threads.")] = 50,
    ) -> list[ThreadItem]:
        out = []
        for t in service.store.threads(limit=limit):
            runs = service.store.thread_runs(t.thread_id)
            if runs:
                out.append(
                    ThreadItem(
                        thread_id=t.thread_id,
                        turns=t.turns,
                        last_task_id=runs[-1].id,
                        last_status=runs[-1].status,
                        created_at=t.created_at,
                        last_at=t.last_at,
                    )
                )
        return out
