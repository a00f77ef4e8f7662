"""Threads as they are read: a thread's turns, the list of threads, and where a turn is
(``phase``: settled, live, queued or stopped), which decides what new input may do."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flowstate.checkpoints import LeaseStore, RunRecord
from flowstate.errors import ThreadBusy, ThreadNotFound, resume_hint

from ._lease import local_owner_alive

if TYPE_CHECKING:
    from ._app_core import GraphCore

__all__ = [
    "Phase",
    "Thread",
    "ThreadSummary",
    "Turn",
    "busy_error",
    "describe",
    "get_thread",
    "list_threads",
    "phase",
]

Phase = Literal["settled", "live", "queued", "stopped"]
"""Where a turn is: ``settled`` (completed or cancelled, no live process: the next turn
may start from it), ``live`` (a process holds its lease), ``queued`` (not started),
``stopped`` (paused, failed, or left running by a crash: resume or cancel it)."""


@dataclass(frozen=True)
class Turn:
    """One turn of a thread: a run."""

    thread_id: str
    turn: int
    """Its number on the thread, from 1."""
    run_id: str
    status: str
    input: dict[str, Any]
    """What was sent for this turn (for turn 1, the whole input state)."""
    error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Thread:
    """A thread and its turns, by turn number."""

    thread_id: str
    turns: list[Turn]
    forked_from: tuple[str, int] | None = None
    """``(run id, step)`` this thread was forked from, when it is a fork of a turn."""

    @property
    def last(self) -> Turn:
        return self.turns[-1]


@dataclass(frozen=True)
class ThreadSummary:
    """A thread as ``threads()`` lists it."""

    thread_id: str
    turns: int
    last_run_id: str
    last_status: str
    created_at: float
    last_at: float
    """When its latest turn was created."""


# -- reading ------------------------------------------------------------------------------


def turn_of(run: RunRecord) -> Turn:
    try:
        data = json.loads(run.input)
    except ValueError:
        data = {}
    return Turn(
        thread_id=str(run.thread_id),
        turn=int(run.turn or 0),
        run_id=run.id,
        status=run.status,
        input=data if isinstance(data, dict) else {},
        error=run.error,
        created_at=run.created_at,
        updated_at=run.updated_at,
    )


def get_thread(graph: GraphCore[Any], thread_id: str) -> Thread:
    runs = graph.store.thread_runs(thread_id)
    if not runs:
        raise ThreadNotFound(thread_id)
    first = runs[0]
    origin = (
        (first.parent_id, int(first.parent_step or 0))
        if first.parent_id is not None and "/" not in first.id
        else None
    )
    return Thread(thread_id, [turn_of(r) for r in runs], origin)


def list_threads(
    graph: GraphCore[Any], limit: int = 100, before: float | None = None
) -> list[ThreadSummary]:
    out: list[ThreadSummary] = []
    for t in graph.store.threads(limit=limit, before=before):
        runs = graph.store.thread_runs(t.thread_id)
        if not runs:
            continue  # deleted meanwhile
        out.append(
            ThreadSummary(
                thread_id=t.thread_id,
                turns=t.turns,
                last_run_id=runs[-1].id,
                last_status=runs[-1].status,
                created_at=t.created_at,
                last_at=t.last_at,
            )
        )
    return out


def phase(graph: GraphCore[Any], run: RunRecord) -> Phase:
    """Where turn ``run`` is (see ``Phase``); "live" is a lease held by a live owner."""
    if run.status == "queued":
        return "queued"
    if run.status == "completed":
        return "settled"  # whatever lease its process has not given back yet
    store = graph.store
    if isinstance(store, LeaseStore):
        owner, _, until = store.lease(run.id)
        if owner and until is not None and until > time.time():
            if local_owner_alive(owner) is not False:
                return "live"
    elif run.status == "running" and run.id in graph._tasks:
        return "live"
    if run.status in ("completed", "cancelled"):
        return "settled"
    return "stopped"


def describe(run: RunRecord, ph: Phase) -> str:
    if ph == "live":
        return "running"
    if ph == "stopped" and run.status == "running":
        return "left running by a process that died"
    return run.status + (f" ({run.error})" if run.error and ph == "stopped" else "")


def busy_error(run: RunRecord, ph: Phase) -> ThreadBusy:
    tid, n = str(run.thread_id), int(run.turn or 0)
    options = (
        "or send it with multitask_strategy='enqueue' (it becomes the next turn) or "
        "'interrupt' (that turn is cancelled and the new one starts from its last commit)"
    )
    if ph == "live":
        hint = f"wait for that turn to finish, {options}"
    elif ph == "queued":
        hint = f"it waits for the turn ahead of it; wait for it, {options}"
    else:
        hint = f"finish it first ({resume_hint(run.id)}), {options}"
    return ThreadBusy(tid, n, run.id, describe(run, ph), hint)
