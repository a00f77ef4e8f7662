"""Executing a run: drive its resume point to the end under its lease (heartbeat, fencing),
and turn cancellation — from this process or acknowledged in another — into its result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from flowstate import events as ev
from flowstate.checkpoints import (
    LeaseStore,
)
from flowstate.errors import (
    CancelledElsewhere,
    LeaseLost,
)
from flowstate.observability import observe_events, run_observer, run_scope

from ._event_log import EventLog, event_log
from ._group import commit_group
from ._lease import Heartbeat, retire
from ._point import ResumePoint
from ._results import RunResult
from ._scheduler import Execution
from ._streaming import Subscription

if TYPE_CHECKING:
    from ._app_core import GraphCore

__all__ = ["execute"]


async def execute(
    graph: GraphCore[Any], point: ResumePoint, emit: Callable[[Any], None] | None
) -> RunResult[Any]:
    """Drive ``point`` to its end, holding its lease (with a heartbeat) meanwhile."""
    run, lease, store = point.run, point.lease, graph.store
    # a subgraph's child run counts the tokens its run tree had used before it
    base = point.config.token_base
    point.progress.tokens_in += base[0]
    point.progress.tokens_out += base[1]
    # like the tokens, a child run's cost budget counts what its run tree had spent
    point.progress.cost_usd += point.config.cost_base
    obs = point.observer
    if obs is None and point.resumed:
        obs = run_observer(
            run_id=run.id,
            graph=graph.name,
            kind="resume",
            stored=point.config.trace,
            subgraph=run.parent_id is not None and run.id.startswith(run.parent_id + "/"),
            step=point.step.step,
            limits=point.config.limits.model_dump(),
            took_over=point.took_over,
        )
        point = replace(point, observer=obs)
    events = event_log(store, run.id) if graph.events else None
    group = commit_group(store)
    sink = observe_events(_tee(emit, events), obs, run.id)
    exe = Execution(
        point,
        store=store,
        ir=graph.ir,
        services=graph.services,
        memory=graph._memory_binding,
        emit=sink,
        listening=emit is not None or obs is not None,
        log=events,
        group=group,
        rng=graph.rng,
        step_state=isinstance(emit, Subscription) and emit.values,
    )
    sink(
        ev.RunStarted(run_id=run.id, graph=graph.name, resumed=point.resumed, step=point.step.step)
    )
    dying = False
    inner = asyncio.ensure_future(run_scope(exe.drive(), run.id, obs))
    graph._tasks[run.id] = inner
    beat: Heartbeat | None = None
    if lease is not None and isinstance(store, LeaseStore):
        beat = Heartbeat(store, run.id, lease.owner, lease.epoch, graph.lease_ttl, inner)
        beat.start()
    if group is not None:
        group.active += 1
        if events is not None:
            group.logs.add(events)
            events.group = group
    try:
        outcome = await asyncio.shield(inner)
        if outcome.status != "paused" and "/" not in run.id and len(graph._tasks) <= 1:
            store.shrink_wal()  # the last run of this graph to finish folds the WAL back
    except CancelledElsewhere:
        # another process acknowledged a cancel: its status stands, nothing of ours was
        # committed after it; take the request off so a later resume starts clean
        with contextlib.suppress(Exception):
            store.clear_signals(run.id)
        sink(ev.RunFinished(run_id=run.id, status="cancelled", reason="cancelled"))
        return RunResult(
            run_id=run.id,
            status="cancelled",
            state=cast("Any", exe.state),
            reason="cancelled",
            step=exe.current.number,
        )
    except asyncio.CancelledError:
        if beat is not None and beat.lost:
            epoch = lease.epoch if lease else 0
            raise LeaseLost(run.id, epoch, "its heartbeat failed") from None
        # Either app.cancel() cancelled the run, or our caller's task was cancelled.
        if not inner.done():
            inner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await inner
        head = exe.current.number
        store.update_run(run.id, status="cancelled", error="cancelled", head_step=head)
        sink(ev.RunFinished(run_id=run.id, status="cancelled", reason="cancelled"))
        if run.id in graph._cancel_requested:
            graph._cancel_requested.discard(run.id)
            return RunResult(
                run_id=run.id,
                status="cancelled",
                state=cast("Any", exe.state),
                reason="cancelled",
                step=head,
            )
        raise
    except BaseException as e:
        # a BaseException that is not an Exception stands for the process dying (a
        # simulated crash, SystemExit): nothing more is written, events included
        dying = not isinstance(e, Exception)
        if obs is not None:
            obs.close(e)
        raise
    finally:
        if group is not None:
            group.active -= 1
            if events is not None:
                group.logs.discard(events)
                events.group = None
        if events is not None and dying:
            events.discard()
        elif events is not None:
            with contextlib.suppress(Exception):
                events.flush()
        if obs is not None:
            obs.close()
        graph._tasks.pop(run.id, None)
        if lease is not None:
            retire(lease.owner)
        if beat is not None:
            beat.stop()
        if lease is not None and isinstance(store, LeaseStore):
            with contextlib.suppress(Exception):
                store.release(run.id, lease.owner, lease.epoch)
    return RunResult(
        run_id=run.id,
        status=outcome.status,
        state=cast("Any", outcome.state),
        reason=outcome.reason,
        step=outcome.step,
        interrupts=outcome.interrupts,
    )


def _tee(emit: Callable[[Any], None] | None, events: EventLog | None) -> Callable[[Any], None]:
    """Where the execution's events go: the caller's ``on_event`` and the store."""
    if events is None:
        return emit or (lambda e: None)
    if emit is None:
        return events

    def both(e: Any) -> None:
        events(e)
        emit(e)

    return both
