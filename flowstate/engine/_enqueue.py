"""Enqueueing: a run is stored ``queued`` with a queue row, for a fleet worker to execute
(``flowstate worker``), instead of being executed by the calling process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowstate.checkpoints import RunRecord

from ._interrupts import UNSET, answer_interrupts

if TYPE_CHECKING:
    from ._app import CompiledGraph

__all__ = ["enqueue_existing", "enqueue_new", "run_queue"]


def run_queue(store: Any) -> Any:
    """The store's ``RunQueue`` (``QueueUnavailable`` when the store has none)."""
    from flowstate.checkpoints import RunQueue

    return RunQueue(store)


def _check(queue: str, max_attempts: int) -> None:
    if not isinstance(queue, str) or not queue or len(queue) > 100:
        raise ValueError(f"queue must be a non-empty name of at most 100 characters, not {queue!r}")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an integer >= 1, not {max_attempts!r}")


def enqueue_new(
    graph: CompiledGraph[Any],
    input: Any,
    *,
    queue: str,
    max_attempts: int,
    priority: int,
    delay: float,
    admit: Mapping[str, Any],
) -> RunRecord:
    """Admit ``input`` as ``run`` would (same checks, configuration and first step) and
    store it ``queued`` with its queue row, in one transaction."""
    _check(queue, max_attempts)
    q = run_queue(graph.store)
    run, step0 = graph.admit(input, **admit)
    q.enqueue_new(
        run, step0, queue=queue, max_attempts=max_attempts, priority=priority, delay=delay
    )
    return run


def enqueue_existing(
    graph: CompiledGraph[Any],
    run_id: str,
    *,
    value: Any = UNSET,
    answers: Mapping[str, Any] | None = None,
    queue: str,
    max_attempts: int,
    priority: int = 0,
) -> RunRecord:
    """Record the answers to a paused run's interrupts (as ``resume`` would) and put the
    run back on the queue; also re-queues a failed, cancelled or dead run by hand."""
    _check(queue, max_attempts)
    q = run_queue(graph.store)
    graph.store.get_run(run_id)
    if value is not UNSET or answers:
        answer_interrupts(graph.store, run_id, value=value, answers=answers)
    return q.enqueue(run_id, queue=queue, max_attempts=max_attempts, priority=priority)
