"""Executing tasks: the ``TaskRunner`` half of ``TaskService`` (``_service``).

Each task runs as an asyncio task of the server's event loop (``_drive``): it waits for its
thread's turn without a slot, then takes one of ``max_concurrent_runs`` slots and runs
``graph.resume(run_id)`` under ``task_timeout``. Its events go to an ``EventLog`` for SSE
subscribers; whatever stops it, ``_finish`` makes the store tell the outcome (cancelled,
timed out, back to ``queued`` at shutdown or on a storage fault, failed) and starts a
thread's next turn. ``start`` queues again the runs a crash or a stop left unfinished;
``stop`` puts the executions back to ``queued``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowstate import events as ev
from flowstate.checkpoints import CheckpointStore, RunRecord
from flowstate.engine import CompiledGraph
from flowstate.errors import FlowstateError, NodeFailed, RunOwned, StoreError

from ._follow import RunFollower
from ._paging import iter_runs
from ._registry import GraphRegistry
from ._stream import EventLog, dump_event
from ._supervisor import StoreSupervisor, storage_fault

__all__ = ["KEEPALIVE_SECONDS", "TaskRunner"]

log = logging.getLogger("flowstate.service")

SHUTDOWN_WAIT_SECONDS = 10.0
KEEPALIVE_SECONDS = 15.0
RETAINED_LOGS = 256
"""Event logs of finished executions kept for late SSE subscribers."""


@dataclass
class _Execution:
    """One execution of a task in this process: from queued to an outcome."""

    run_id: str
    graph: CompiledGraph[Any]
    log: EventLog
    fresh: bool
    """First execution after admission: its run_started says resumed=false."""
    max_steps: int | None = None
    rerun_step: bool = False
    """Resume with ``rerun_step=True`` (the head step's activations run again)."""
    cancel_reason: str | None = None
    """Set when the service cancels it: 'cancelled' (on request) or 'timeout'."""
    task: asyncio.Task[None] | None = None
    started: bool = False
    error: BaseException | None = field(default=None, repr=False)
    owned: RunOwned | None = field(default=None, repr=False)
    """Set when another live process held the run's lease: this execution never started."""
    waiting: bool = False
    """A thread's turn left queued: a turn ahead of it is paused, failed or crashed."""


class TaskRunner:
    """Runs tasks in this process: bounded, timed, cancellable executions whose outcome the
    store always tells, recovered at startup (``TaskService`` adds the API over them)."""

    def __init__(
        self,
        graphs: GraphRegistry,
        store: CheckpointStore,
        *,
        max_concurrent_runs: int = 8,
        task_timeout: float | None = None,
        retained_logs: int = RETAINED_LOGS,
        probe_seconds: float = 5.0,
    ) -> None:
        if max_concurrent_runs < 1:
            raise ValueError(f"max_concurrent_runs must be at least 1, not {max_concurrent_runs}")
        if task_timeout is not None and not task_timeout > 0:
            raise ValueError(f"task_timeout must be positive seconds or None, not {task_timeout}")
        self.graphs = graphs
        self.store = store
        self.max_concurrent_runs = max_concurrent_runs
        self.task_timeout = task_timeout
        self._retained = retained_logs
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        self._live: dict[str, _Execution] = {}
        self._logs: OrderedDict[str, EventLog] = OrderedDict()
        self.follower = RunFollower(store, KEEPALIVE_SECONDS)
        """Streams the events of runs executed by other processes, from the store."""
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.started = False
        self.recovered: list[str] = []
        """Runs picked up again at startup."""
        self.recovery_error: str | None = None
        self.stats: Callable[[RunRecord], dict[str, Any]] | None = None
        """Per-run numbers for list items (duration, activations, tokens, cost)."""
        self.health = StoreSupervisor(store, self._recover, probe_seconds=probe_seconds)
        """The store's health (``/ready``) and the tasks a storage fault orphaned."""
        # The engine folds the WAL back into the database (a checkpoint and an fsync, on
        # the event loop) when the last run of a graph finishes in the process. A busy
        # service reaches that point between most of its tasks, since the ones queued for
        # a slot are not running yet: fold only when no other task is live here.
        self._fold_wal = store.shrink_wal
        store.shrink_wal = self._shrink_wal_when_idle

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Queue again every run left ``running`` or ``queued`` (by a crash or a stop)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            pending = [r for s in ("running", "queued") for r in iter_runs(self.store, s)]
        except StoreError as e:  # e.g. a corrupt run row: serve, but say so on /ready
            self.recovery_error = f"{e.code}: unfinished tasks were not resumed: {e.message}"
            log.error("%s", self.recovery_error)
            pending = []
        pending.sort(key=lambda r: (r.created_at, r.id))
        for run in pending:
            graph = self.graphs.get(run.graph)
            if graph is None:
                log.warning(
                    "run %s of graph '%s' is %s, but this server does not serve '%s': left as is",
                    run.id,
                    run.graph,
                    run.status,
                    run.graph,
                )
                continue
            if run.status == "running":
                if self._leased(run.id):
                    # another process (a second server on this file, a CLI resume) holds
                    # a live lease: try to take it over only through resume, which
                    # refuses while that owner lives; never re-queue or fail its run
                    self._schedule(run.id, graph, fresh=False)
                    self.recovered.append(run.id)
                    continue
                self.store.update_run(run.id, status="queued")
            self._schedule(run.id, graph, fresh=False)
            self.recovered.append(run.id)
        if self.recovered:
            log.info("resuming %d task(s) left unfinished", len(self.recovered))
        self.health.start()
        self.started = True

    def _shrink_wal_when_idle(self) -> None:
        # called by the execution that finishes, still in _live
        if len(self._live) <= 1:
            self._fold_wal()

    def _leased(self, run_id: str) -> bool:
        lease = getattr(self.store, "lease", None)
        if lease is None:
            return False
        owner, _, until = lease(run_id)
        return bool(owner) and until is not None and until > time.time()

    async def stop(self) -> None:
        """Stop every execution; each goes back to ``queued`` for the next start."""
        self._closing = True
        self.follower.close()
        await self.health.stop()
        tasks = [x.task for x in self._live.values() if x.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_SECONDS)

    # -- execution ------------------------------------------------------------------------

    def _schedule(
        self,
        run_id: str,
        graph: CompiledGraph[Any],
        *,
        fresh: bool,
        max_steps: int | None = None,
        rerun_step: bool = False,
    ) -> _Execution:
        x = _Execution(
            run_id, graph, EventLog(run_id), fresh=fresh, max_steps=max_steps, rerun_step=rerun_step
        )
        self._live[run_id] = x
        self._retain(run_id, x.log)
        x.task = asyncio.get_running_loop().create_task(self._drive(x), name=f"task {run_id}")
        return x

    async def _drive(self, x: _Execution) -> None:
        timer: asyncio.TimerHandle | None = None
        try:
            # a thread's turn waits for the turns ahead of it without holding a slot
            if not await x.graph.wait_turn(x.run_id):
                x.waiting = True
                return
            async with self._slots:
                x.started = True
                if self.task_timeout is not None:
                    timer = asyncio.get_running_loop().call_later(
                        self.task_timeout, self._expire, x
                    )
                await x.graph.resume(
                    x.run_id,
                    rerun_step=x.rerun_step,
                    max_steps=x.max_steps,
                    on_event=lambda e: self._on_event(x, e),
                )
        except asyncio.CancelledError:
            pass  # by cancel(), the timeout or stop(): _finish records the outcome
        except RunOwned as e:
            # a live process executes this run: not a failure of the task, and not ours
            # to record anything about
            x.owned = e
            log.info("task %s is executed by %s; left to it", x.run_id, e.owner)
        except NodeFailed:
            pass  # the engine recorded 'failed' with the node's error
        except Exception as e:
            x.error = e
            if not isinstance(e, FlowstateError):
                log.error("task %s stopped by an unexpected error", x.run_id, exc_info=e)
        finally:
            if timer is not None:
                timer.cancel()
            self._finish(x)

    def _expire(self, x: _Execution) -> None:
        if x.task is not None and not x.task.done() and x.cancel_reason is None:
            x.cancel_reason = "timeout"
            x.task.cancel()

    def _on_event(self, x: _Execution, event: Any) -> None:
        if threading.get_ident() != self._loop_thread and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_event, x, event)  # e.g. a sync node's token
            return
        own = getattr(event, "run_id", None) == x.run_id
        if own and isinstance(event, ev.RunStarted) and x.fresh:
            event = event.model_copy(update={"resumed": False})
            x.fresh = False
        if own and isinstance(event, ev.RunFinished) and event.status == "cancelled":
            if x.cancel_reason is not None:
                event = event.model_copy(update={"reason": x.cancel_reason})
            elif self._closing:
                event = event.model_copy(
                    update={
                        "status": "queued",
                        "reason": "the server stopped; it resumes on restart",
                    }
                )
        kind, data = dump_event(event)
        x.log.append(kind, data, final=own and kind == "run_finished")

    def _finish(self, x: _Execution) -> None:
        """Make the store tell the outcome, whatever stopped the execution. A storage
        fault orphans the task: it waits ``queued`` (or stays ``running`` when even that
        cannot be written) for the store to accept writes again, then resumes."""
        run: RunRecord | None = None
        fault = storage_fault(x.error) and not self._closing
        if fault:
            assert x.error is not None
            self.health.failed(x.error, x.run_id)
        try:
            run = self.store.get_run(x.run_id)
            if x.owned is not None or x.waiting:
                pass  # a refused claim (the owner records the outcome), or a turn waiting
            elif x.cancel_reason is not None:
                if run.status in ("running", "queued", "cancelled") and (
                    run.status != "cancelled" or run.error != x.cancel_reason
                ):
                    run = self.store.update_run(x.run_id, status="cancelled", error=x.cancel_reason)
            elif self._closing:
                if run.status in ("running", "cancelled"):
                    run = self.store.update_run(x.run_id, status="queued", error=None)
            elif fault and run.status in ("running", "queued"):
                why = f"waiting for the checkpoint store to accept writes: {self.health.error}"
                run = self.store.update_run(x.run_id, status="queued", error=why[:2000])
            elif run.status in ("running", "queued"):
                # the engine stopped before recording an outcome (a graph mismatch)
                e = x.error
                if isinstance(e, FlowstateError):
                    why = f"{e.code}: {e.message}"
                elif e is not None:
                    why = f"{type(e).__name__}: {e}"
                else:
                    why = "the execution stopped without recording an outcome"
                run = self.store.update_run(x.run_id, status="failed", error=why[:2000])
        except FlowstateError as e:
            log.error("task %s: cannot record its outcome: %s", x.run_id, e)
        finally:
            if self._live.get(x.run_id) is x:
                del self._live[x.run_id]
            if run is not None and run.thread_id is not None and not self._closing:
                self._next_turn(run)
            if not x.log.done:
                status = run.status if run is not None else "failed"
                reason = run.error if run is not None else "the outcome could not be recorded"
                x.log.append(
                    *dump_event(ev.RunFinished(run_id=x.run_id, status=status, reason=reason)),
                    final=True,
                )
            if x.owned is not None and self._logs.get(x.run_id) is x.log:
                # another process executes the run: its events are in the store, and a
                # stream opened from now on follows them there (this log never started)
                del self._logs[x.run_id]
            self._evict()

    def _next_turn(self, run: RunRecord) -> None:
        """After a turn of a thread ended here: start the thread's next turn if it is queued
        and not already waiting in this server (its turn ahead finished)."""
        if run.status not in ("completed", "cancelled"):
            return
        try:
            turns = self.store.thread_runs(str(run.thread_id))
            later = [r for r in turns if (r.turn or 0) > (run.turn or 0)]
        except FlowstateError:
            return
        nxt = later[0] if later else None
        if nxt is not None and nxt.status == "queued" and nxt.id not in self._live:
            graph = self.graphs.get(nxt.graph)
            if graph is not None:
                self._schedule(nxt.id, graph, fresh=True)

    def _recover(self, run_id: str) -> None:
        """Resume a task a storage fault orphaned (the store accepts writes again)."""
        if run_id in self._live or self._closing:
            return
        run = self.store.get_run(run_id)
        graph = self.graphs.get(run.graph)
        if run.status not in ("running", "queued") or graph is None:
            return  # resolved meanwhile (cancelled, resumed by another process)
        if run.status == "running":
            self.store.update_run(run_id, status="queued", error=None)
        log.info("resuming task %s, orphaned by a storage fault", run_id)
        self._schedule(run_id, graph, fresh=False)

    def _retain(self, run_id: str, log_: EventLog) -> None:
        self._logs[run_id] = log_
        self._logs.move_to_end(run_id)
        self._evict()

    def _evict(self) -> None:
        excess = len(self._logs) - self._retained - len(self._live)
        if excess <= 0:
            return
        for rid in [r for r in self._logs if r not in self._live][:excess]:
            del self._logs[rid]
