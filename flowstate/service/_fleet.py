"""The enqueue-only task service: on a shared PostgreSQL, service processes admit tasks
onto the fleet's queue and read; ``flowstate worker`` processes execute them.

Everything the API does stays the same except where execution happens:

- ``POST /v1/tasks`` stores the run and its queue row in one transaction (``queued``)
  and a listening worker claims it at once.
- ``resume`` records the answers in the store and puts the run back on the queue.
- ``cancel`` of a run a worker executes sends the cancel signal, which the worker hears
  by NOTIFY and acts on at once; its later commits are refused (fencing).
- Nothing is recovered at startup and nothing is stopped at shutdown: the workers own
  execution, so any number of service processes may share the database.
- The event stream of a task follows the store and ends with ``run_finished``.
"""

from __future__ import annotations

from typing import Any

from flowstate.checkpoints import CheckpointStore, RunQueue, RunRecord, StepRecord
from flowstate.engine import CompiledGraph

from ._http import ApiError
from ._registry import GraphRegistry
from ._service import TaskService

__all__ = ["FleetTaskService"]


class FleetTaskService(TaskService):
    """A ``TaskService`` that executes nothing itself: tasks go on the store's run queue
    (``queue``), with ``max_attempts`` before a task is dead-lettered."""

    def __init__(
        self,
        graphs: GraphRegistry,
        store: CheckpointStore,
        *,
        queue: str = "default",
        max_attempts: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(graphs, store, **kwargs)
        self.queue = RunQueue(store)  # QueueUnavailable unless the store has one
        self.queue_name = queue
        self.max_attempts = max_attempts

    async def start(self) -> None:
        self.started = True  # the workers recover unfinished runs, not the service

    async def stop(self) -> None:
        self._closing = True

    def _store_new(self, run: RunRecord, step0: StepRecord) -> None:
        self.queue.enqueue_new(run, step0, queue=self.queue_name, max_attempts=self.max_attempts)

    def resume(self, run_id: str, *, max_steps: int | None = None, **kwargs: Any) -> RunRecord:
        if max_steps is not None or kwargs.get("rerun_step"):
            raise ApiError(
                422,
                "max_steps and rerun_step on resume are not available on an enqueue-only "
                "service: a "
                "worker resumes the run with its stored limits",
            )
        super().resume(run_id, **kwargs)
        return self.store.get_run(run_id)

    def _schedule(
        self,
        run_id: str,
        graph: CompiledGraph[Any],
        *,
        fresh: bool,
        max_steps: int | None = None,
        **_: Any,
    ) -> None:
        if not fresh:  # a new task was enqueued with its rows by _store_new
            self.queue.enqueue(run_id, queue=self.queue_name, max_attempts=self.max_attempts)
