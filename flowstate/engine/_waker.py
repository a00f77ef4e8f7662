"""Waking due runs: whoever runs runs (``flowstate resume --due``, the service's
background loop, a worker) calls ``wake_due`` to resume every paused run whose timer or
interrupt deadline has come, answering timed-out interrupts with the timeout marker.

Due-ness is read from the injectable clock (``flowstate.clock``); how often a loop looks
is real time. Several wakers may run at once: the run's lease lets one resume it, and the
one that gets the lease second finds it no longer due (``NotDue``) and leaves it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flowstate.checkpoints import LeaseStore, TimerStore
from flowstate.clock import get_clock
from flowstate.errors import FlowstateError, RunOwned

from ._interrupts import pending_interrupts
from ._timers import TIMEOUT_KEY, NotDue

if TYPE_CHECKING:
    from ._app import CompiledGraph
    from ._results import RunResult

__all__ = ["check_due", "wake_due", "wake_loop"]

log = logging.getLogger("flowstate.timers")

Graphs = Mapping[str, "CompiledGraph[Any]"] | Callable[[str], "CompiledGraph[Any] | None"]
"""The graphs a waker serves: by name, or a function from a graph name to its graph."""


def check_due(store: Any, run_id: str, due: float, owner: str, epoch: int) -> None:
    """Raise ``NotDue`` (releasing the lease just taken; the caller retires its owner)
    unless the run still waits for a
    time at or before ``due``."""
    wake = store.wake_time(run_id) if isinstance(store, TimerStore) else None
    if wake is not None and wake <= due:
        return
    if epoch and isinstance(store, LeaseStore):
        store.release(run_id, owner, epoch)
    raise NotDue(f"run {run_id} is no longer due (resumed elsewhere); nothing to do")


async def wake_due(
    store: Any,
    graphs: Graphs,
    *,
    now: float | None = None,
    limit: int = 100,
    on_event: Callable[[Any], None] | None = None,
) -> list[RunResult[Any]]:
    """Resume every paused run of ``store`` whose wake-up time is at or before ``now``
    (default: the clock's time) and whose graph ``graphs`` names; returns their results.

    Interrupts whose deadline has passed are answered with the timeout marker (the node
    gets its ``default`` or ``TimedOut``); other pending interrupts ask again. A run another
    process holds, or that was resumed meanwhile, is left alone; a run that fails is logged
    and the others are still woken.
    """
    timers = store
    if not isinstance(timers, TimerStore):
        return []
    at = get_clock().now() if now is None else now
    lookup = graphs if callable(graphs) else graphs.get
    results: list[RunResult[Any]] = []
    for run_id, _ in timers.due_runs(at, limit):
        run = store.find_run(run_id)
        if run is None or (run.parent_id and run_id.startswith(run.parent_id + "/")):
            continue  # a subgraph's child run: its parent wakes it
        graph = lookup(run.graph)
        if graph is None:
            log.debug("run %s is due but graph %r is not served here", run_id, run.graph)
            continue
        timed_out = {
            p.id: {TIMEOUT_KEY: True, "deadline": p.deadline}
            for p in pending_interrupts(store, run_id)
            if p.deadline is not None and p.deadline <= at
        }
        try:
            result = await graph.bind(store)._continue(
                run_id, answers=timed_out or None, due=at, emit=on_event
            )
        except (RunOwned, NotDue):
            continue
        except FlowstateError as e:
            log.warning("waking run %s failed: %s", run_id, e)
            continue
        results.append(result)
    return results


async def wake_loop(
    store: Any,
    graphs: Graphs,
    *,
    poll: float = 1.0,
    stop: asyncio.Event | None = None,
    on_result: Callable[[RunResult[Any]], None] | None = None,
) -> None:
    """``wake_due`` every ``poll`` seconds (real time) until ``stop`` is set."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            for r in await wake_due(store, graphs):
                if on_result is not None:
                    on_result(r)
        except Exception:  # a store hiccup must not end the loop: log it, look again
            log.exception("waking due runs failed")
        try:
            await asyncio.wait_for(stop.wait(), poll)
        except TimeoutError:
            pass
