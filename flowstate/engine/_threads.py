"""Threads: a conversation as a sequence of runs (turns) over one evolving state.

Turn 1 of a thread is an ordinary run of its input. Turn N+1 starts from turn N's final
state with the new input applied as an update through the reducers (``messages`` appends
the new user turn). Each turn is a run with every run guarantee: checkpoints, journal,
resume after a crash, replay, fork.

A turn's ``input`` column holds what the caller sent for that turn (for turn 1 the whole
input state); its step 0 holds the state it started from. A turn that cannot start yet is
stored ``queued`` with a placeholder step 0 (no snapshot); whoever starts it — the
caller waiting for it, ``resume``, a service — fills step 0 from the turn ahead of it,
under the run's lease, so exactly one process does.

New input while the thread's last turn is unfinished follows a strategy:

- ``reject`` (default): ``ThreadBusy`` names the turn and what to do;
- ``enqueue``: the input is stored as the next turn, ``queued``; it starts when every
  turn ahead of it has finished (completed, or cancelled);
- ``interrupt``: the unfinished turn ahead is cancelled (at its next node boundary, if a
  live process runs it) and the new turn starts from its last commit.

"Running" is a live lease, not a status: a turn left ``running`` by a crashed process is
resumable, like a paused or failed one.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel

from flowstate.checkpoints import LeaseStore, RunRecord, StepRecord
from flowstate.errors import (
    ConfigError,
    InputRejected,
    PayloadTooLarge,
    RunOwned,
    RunStateError,
    TurnConflict,
    TurnNotReady,
    UpdateRejected,
    resume_hint,
)

from ._admission import new_run, unknown_fields
from ._lease import local_owner_alive, new_owner, retire
from ._plan import start_tasks
from ._point import RunConfig
from ._results import RunResult
from ._thread_view import Phase, busy_error, describe, phase

if TYPE_CHECKING:
    from ._app_runs import GraphRunner

__all__ = [
    "MultitaskStrategy",
    "admit_turn",
    "prepare_turn",
    "run_turn",
    "wait_turn",
]

MultitaskStrategy = Literal["reject", "enqueue", "interrupt"]
"""What new input does while the thread's last turn is unfinished (see the module doc)."""

STRATEGIES: tuple[str, ...] = get_args(MultitaskStrategy)

_POLL_MAX = 0.5
"""Longest pause between two looks at the turn ahead, in seconds."""


@dataclass
class _Waiting:
    """Why a queued turn cannot start yet: the first unfinished turn ahead of it."""

    run: RunRecord
    phase: Phase
    ahead: list[RunRecord] = field(default_factory=list)


# -- admitting a turn ---------------------------------------------------------------------


def _turn_update(graph: GraphRunner[Any], thread_id: str, input: Any) -> tuple[Any, str]:
    """The new input of a later turn, validated like a node's update (every field known,
    every value of its field's type): its values and their JSON."""
    schema = graph.ir.schema
    data = input.model_dump(exclude_unset=True) if isinstance(input, BaseModel) else input
    if not isinstance(data, dict):
        raise InputRejected(
            f"the input of a turn of thread {thread_id!r} must be a mapping of "
            f"{schema.name} fields, not {type(input).__name__}; nothing was stored"
        )
    unknown = unknown_fields(schema.model, data)
    if unknown:
        raise InputRejected(
            f"the input has field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}, which {schema.name} does not have "
            f"(its fields: {', '.join(schema.model.model_fields)}); fix the name or add "
            f"the field to the state; no turn of thread {thread_id!r} was stored"
        )
    try:
        values = schema.validate_update("input", data, None)
        return values, schema.dump_update("input", values)
    except UpdateRejected as e:
        raise InputRejected(
            f"the input does not fit {schema.name}: {e.message}; no turn of thread "
            f"{thread_id!r} was stored"
        ) from None


def _start_state(
    graph: GraphRunner[Any], ahead: RunRecord, update: dict[str, Any], config: RunConfig
) -> tuple[BaseModel, str, list[Any]]:
    """The state a turn starts from: the turn ahead's state (final, or its last commit if
    it was cancelled) with the turn's input applied through the reducers."""
    schema = graph.ir.schema
    state = schema.apply(graph.get_state(ahead.id), [("input", update)])
    state_json = schema.dump_state(state)
    limit = config.limits.max_state_bytes
    if len(state_json) > limit:
        raise PayloadTooLarge("the turn's start state", len(state_json), limit, "max_state_bytes")
    return state, state_json, start_tasks(graph.ir, state)


def _rows(
    graph: GraphRunner[Any],
    *,
    run_id: str,
    thread_id: str,
    turn: int,
    input_json: str,
    config: RunConfig,
    status: str,
    tasks: list[Any] | None,
    snapshot: str | None,
) -> tuple[RunRecord, StepRecord]:
    now = time.time()
    run = RunRecord(
        id=run_id,
        graph=graph.name,
        fingerprint=graph.fingerprint,
        graph_doc=graph.graph_doc,
        status=status if tasks is None or tasks else "completed",  # type: ignore[arg-type]
        input=input_json,
        config=config.to_json(),
        created_at=now,
        updated_at=now,
        thread_id=thread_id,
        turn=turn,
    )
    step0 = StepRecord(
        run_id=run_id,
        step=0,
        tasks=json.dumps([t.to_json() for t in tasks or []]),
        snapshot=snapshot,
        created_at=now,
    )
    return run, step0


@dataclass
class Admission:
    """A turn's rows, and whether it can start at once (``ready``) or waits (queued)."""

    run: RunRecord
    step0: StepRecord
    state: BaseModel | None
    """The start state, when ``ready``."""
    ready: bool


def _plan(
    graph: GraphRunner[Any],
    input: Any,
    *,
    thread_id: str,
    strategy: str,
    run_id: str | None,
    config: RunConfig,
    queue_all: bool,
) -> tuple[Admission, list[RunRecord]]:
    """The rows of the next turn of ``thread_id``, and the turns ``interrupt`` cancels.
    ``queue_all``: store even a turn that could start at once as ``queued`` (a service
    admits, an execution slot starts it)."""
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"multitask_strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}"
        )
    if not thread_id or not isinstance(thread_id, str):
        raise ConfigError(f"thread_id must be a non-empty string, not {thread_id!r}")
    store = graph.store
    if run_id is not None and store.find_run(run_id) is not None:
        raise RunStateError(
            f"a run with id '{run_id}' already exists, so it cannot be a new turn of thread "
            f"{thread_id!r}: leave run_id out (a new id is chosen) or choose another one"
        )
    rid = run_id or uuid.uuid4().hex[:16]
    turns = store.thread_runs(thread_id)
    if not turns:
        run, step0, state = new_run(graph, input, run_id=rid, config=config)
        run = run.model_copy(update={"thread_id": thread_id, "turn": 1})
        if queue_all and run.status == "running":
            run = run.model_copy(update={"status": "queued"})
        return Admission(run, step0, state, ready=not queue_all), []
    last = turns[-1]
    update, input_json = _turn_update(graph, thread_id, input)
    ph = phase(graph, last)
    common = {"run_id": rid, "thread_id": thread_id, "turn": int(last.turn or 0) + 1}
    if ph == "settled" and not queue_all:
        state, snapshot, tasks = _start_state(graph, last, update, config)
        run, step0 = _rows(
            graph,
            **common,
            input_json=input_json,
            config=config,
            status="running",
            tasks=tasks,
            snapshot=snapshot,
        )
        return Admission(run, step0, state, ready=True), []
    victims: list[RunRecord] = []
    if ph != "settled":
        if strategy == "reject":
            raise busy_error(last, ph)
        if strategy == "interrupt":
            # every unfinished turn ahead that has started: the queued ones keep their
            # place (they start, in order, from what the cancelled turn committed)
            victims = [
                r for r in turns if r.status != "queued" and phase(graph, r) in ("live", "stopped")
            ]
    run, step0 = _rows(
        graph,
        **common,
        input_json=input_json,
        config=config,
        status="queued",
        tasks=None,
        snapshot=None,
    )
    return Admission(run, step0, None, ready=False), victims


def admit_turn(
    graph: GraphRunner[Any],
    input: Any,
    *,
    thread_id: str,
    strategy: str = "reject",
    run_id: str | None = None,
    config: RunConfig,
) -> RunRecord:
    """Store the next turn of ``thread_id`` as ``queued`` without executing it (``resume``
    or ``wait_turn`` + ``resume`` starts it); apply ``strategy`` to an unfinished turn
    ahead. For a service that admits durably before it has an execution slot."""
    for _ in range(20):
        adm, victims = _plan(
            graph,
            input,
            thread_id=thread_id,
            strategy=strategy,
            run_id=run_id,
            config=config,
            queue_all=True,
        )
        try:
            graph.store.create_run(adm.run, adm.step0)
        except TurnConflict:
            continue  # another caller took that turn: look again
        _cancel(graph, victims)
        return adm.run
    raise TurnConflict(thread_id, 0, run_id or "?")


def _cancel(graph: GraphRunner[Any], victims: list[RunRecord]) -> None:
    for r in victims:
        try:
            graph.cancel(r.id)
        except RunStateError:
            pass  # it completed meanwhile: the next turn starts from its final state


async def run_turn(
    graph: GraphRunner[Any],
    input: Any,
    *,
    thread_id: str,
    strategy: str,
    run_id: str | None,
    config: RunConfig,
    emit: Callable[[Any], None] | None,
) -> RunResult[Any]:
    """``run(input, thread_id=...)``: start the next turn at once when the turn ahead has
    finished; otherwise apply ``strategy`` and, for ``enqueue``/``interrupt``, wait for
    the turn's place and execute it here."""
    for _ in range(20):
        adm, victims = _plan(
            graph,
            input,
            thread_id=thread_id,
            strategy=strategy,
            run_id=run_id,
            config=config,
            queue_all=False,
        )
        if adm.ready:
            assert adm.state is not None
            try:
                return await graph._launch(adm.run, adm.step0, adm.state, config, emit)
            except TurnConflict:
                continue
        try:
            graph.store.create_run(adm.run, adm.step0)
        except TurnConflict:
            continue
        _cancel(graph, victims)
        return await drive_turn(graph, adm.run.id, emit)
    raise TurnConflict(thread_id, 0, run_id or "?")


# -- starting a queued turn ---------------------------------------------------------------


def _ahead(graph: GraphRunner[Any], run: RunRecord) -> list[RunRecord]:
    """The turns of ``run``'s thread before it, by turn."""
    turns = graph.store.thread_runs(str(run.thread_id))
    return [r for r in turns if (r.turn or 0) < (run.turn or 0)]


def _waiting(graph: GraphRunner[Any], run: RunRecord) -> _Waiting | None:
    """The first turn ahead of queued turn ``run`` that keeps it from starting, with the
    queued turns between (which start first); None when it can start now."""
    ahead = [
        r for r in graph.store.thread_runs(str(run.thread_id)) if (r.turn or 0) < (run.turn or 0)
    ]
    queued: list[RunRecord] = []
    for r in reversed(ahead):
        ph = phase(graph, r)
        if ph == "queued":
            queued.append(r)
            continue
        if ph == "settled" and not queued:
            return None
        if ph == "settled":
            return _Waiting(r, ph, list(reversed(queued)))
        return _Waiting(r, ph, list(reversed(queued)))
    return _Waiting(queued[-1], "queued", list(reversed(queued))) if queued else None


async def wait_turn(graph: GraphRunner[Any], run_id: str, timeout: float | None = None) -> bool:
    """Wait until queued turn ``run_id`` can start (every turn ahead finished): True; False
    when a turn ahead is stopped (paused, failed, crashed: it waits for a resume or a
    cancel) or ``timeout`` passed. Queued turns ahead whose own turn ahead has finished are
    not started here: their starters do that (``drive_turn`` does)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.02
    while True:
        run = graph.store.get_run(run_id)
        if run.status != "queued" or run.thread_id is None:
            return True
        w = _waiting(graph, run)
        if w is None:
            return True
        if w.phase == "stopped":
            return False
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(_POLL_MAX, delay * 2)


async def drive_turn(
    graph: GraphRunner[Any], run_id: str, emit: Callable[[Any], None] | None
) -> RunResult[Any]:
    """Execute queued turn ``run_id`` when its place comes: the turns ahead of it finish
    (queued turns ahead that nobody started are started here first, in order). Returns
    its result; ``status="queued"`` when a turn ahead is stopped (it starts after that
    turn is resumed to its end, or cancelled)."""
    delay = 0.02
    while True:
        run = graph.store.get_run(run_id)
        if run.status != "queued":
            ph = phase(graph, run)
            if ph == "live":  # another process started it: wait for its end
                await asyncio.sleep(delay)
                delay = min(_POLL_MAX, delay * 2)
                continue
            return RunResult(
                run_id=run_id,
                status=run.status,
                state=graph.get_state(run_id),
                reason=run.error,
                step=run.head_step,
            )
        w = _waiting(graph, run)
        if w is not None and w.phase == "stopped":
            return RunResult(
                run_id=run_id,
                status="queued",
                state=graph.get_state(w.run.id),
                reason=f"waits for turn {w.run.turn} (run {w.run.id}), which is "
                f"{describe(w.run, w.phase)}: {resume_hint(w.run.id)} or cancel it",
            )
        target = run_id
        if w is not None:
            nxt = w.ahead[0] if w.ahead else None
            if nxt is None or _waiting(graph, nxt) is not None:
                await asyncio.sleep(delay)
                delay = min(_POLL_MAX, delay * 2)
                continue
            target = nxt.id  # an earlier queued turn nobody started: it goes first
        try:
            result = await graph._continue(target, emit=emit if target == run_id else None)
        except RunOwned:
            await asyncio.sleep(delay)
            continue
        if target == run_id:
            return result
        delay = 0.02


async def prepare_turn(graph: GraphRunner[Any], run_id: str) -> None:
    """Before a queued later turn executes: fill its step 0 with the state it starts from
    (the turn ahead's, with its input applied), under its lease so one process does it.
    ``TurnNotReady`` while a turn ahead has not finished. Nothing for any other run."""
    store = graph.store
    run = store.find_run(run_id)
    if run is None or run.status != "queued" or run.thread_id is None:
        return
    first = store.get_step(run_id, 0)
    if first is None or first.snapshot is not None:
        return
    w = _waiting(graph, run)
    if w is not None:
        raise TurnNotReady(
            run_id, run.thread_id, int(run.turn or 0), w.run.id, describe(w.run, w.phase)
        )
    ahead = _ahead(graph, run)
    if not ahead:
        raise RunStateError(
            f"run {run_id} is turn {run.turn} of thread {run.thread_id!r}, but the turns "
            "ahead of it were deleted (pruned): there is no state for it to start from; "
            "send its input again as a new turn"
        )
    owner, epoch = new_owner(), 0
    try:
        if isinstance(store, LeaseStore):
            epoch = store.acquire(run_id, owner, graph.lease_ttl, alive=local_owner_alive)
        first = store.get_step(run_id, 0)
        if first is not None and first.snapshot is None:
            config = RunConfig.of_run(run, graph.max_steps, graph.limits)
            update = graph.ir.schema.load_update(run.input)
            _, snapshot, tasks = _start_state(graph, ahead[-1], update, config)
            step0 = StepRecord(
                run_id=run_id,
                step=0,
                tasks=json.dumps([t.to_json() for t in tasks]),
                snapshot=snapshot,
                created_at=time.time(),
            )
            done = None if tasks else {"status": "completed", "head_step": 0, "error": None}
            store.commit(run_id, step=step0, run_fields=done)
    finally:
        if epoch and isinstance(store, LeaseStore):
            store.release(run_id, owner, epoch)
        retire(owner)
