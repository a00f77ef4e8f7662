"""Tasks: durable admission, bounded execution, cancel, resume, recovery after a crash.

A task is a run in the checkpoint store. Its life:

- **Admission is durable.** ``POST /v1/tasks`` commits the run row, its input and its
  step-0 row with status ``queued`` before answering 202, so an accepted task survives a
  crash even if it never got a slot (the engine's ``run()`` would create the row only when
  it starts executing; see ``admission_rows``).
- **Execution is bounded.** Each task runs as an asyncio task in the server's event loop,
  behind a semaphore of ``max_concurrent_runs`` slots; while it waits, its status stays
  ``queued``. With a slot it is started with ``graph.resume(run_id)``, which for a queued
  run is its first execution, and gets ``task_timeout`` seconds (if set).
- **Cancel really stops it.** The asyncio task is cancelled; the engine cancels the
  activations in flight (an async node at its next await; a sync node's thread finishes
  but nothing it returns is committed) and records ``cancelled``. The API answers only
  after that record, so nothing commits after the acknowledgement.
- **Recovery.** On startup every ``running`` or ``queued`` run of a served graph is queued
  again and resumed from its last commit: committed activations never re-run.
- **Shutdown** stops executions and puts them back to ``queued`` for the next start.

One server per SQLite file: there are no leases on SQLite, so two servers (or a server
and ``flowstate resume``) must not execute the same run at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from flowstate import events as ev
from flowstate.checkpoints import CheckpointStore, RunRecord, StepRecord
from flowstate.engine import UNSET, CompiledGraph, answer_interrupts, pending_interrupts
from flowstate.errors import FlowstateError, NodeFailed, RunOwned, RunStateError, StoreError
from flowstate.nodes import run_usage

from ._editing import StreamPick, edit_before_resume
from ._follow import RunFollower
from ._http import ApiError
from ._models import (
    Interrupt,
    StepEntry,
    TaskDetail,
    TaskPage,
    TaskSummary,
)
from ._paging import (
    decode_cursor,
    encode_cursor,
    iter_runs,
    page_runs,
    summary_fields,
)
from ._registry import GraphRegistry
from ._stream import EventLog, dump_event, sse, sse_comment
from ._supervisor import StoreSupervisor, storage_fault

__all__ = ["TaskService", "admission_rows"]

log = logging.getLogger("flowstate.service")

CANCEL_WAIT_SECONDS = 10.0
"""How long a cancel request waits for the engine to record ``cancelled``."""
SHUTDOWN_WAIT_SECONDS = 10.0
KEEPALIVE_SECONDS = 15.0
RETAINED_LOGS = 256
"""Event logs of finished executions kept for late SSE subscribers."""

_RESUMABLE = ("paused", "failed", "cancelled", "dead")


async def admission_rows(
    graph: CompiledGraph[Any], state: BaseModel, run_id: str, max_steps: int | None
) -> tuple[RunRecord, StepRecord]:
    """The run row and step-0 row of a new task, made by the engine
    (``CompiledGraph.admit``: the rows ``run()`` writes, with its config, limits and
    checks) with status ``queued`` (``completed`` when START leads nowhere); the service
    stores them, so admission is durable before the task has a slot."""
    return graph.admit(state, run_id=run_id, max_steps=max_steps)


def key_run_id(key: str) -> str:
    """The run id an idempotency key names (the key itself is never stored)."""
    return hashlib.sha256(b"flowstate-task\x1f" + key.encode()).hexdigest()[:16]


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


class TaskService:
    """Admits, runs, cancels and resumes tasks over one store and a set of graphs."""

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

    # -- admission ------------------------------------------------------------------------

    async def submit(
        self,
        graph_name: str,
        state: BaseModel,
        *,
        max_steps: int | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[RunRecord, bool]:
        """Admit a task. Returns its run row and whether it was created (False: the
        idempotency key named an existing task). From the key lookup to the insert there
        is no await, so two requests with one key cannot both create it."""
        graph = self.graphs[graph_name]
        run_id = key_run_id(idempotency_key) if idempotency_key else uuid.uuid4().hex[:16]
        try:
            run, step0 = await admission_rows(graph, state, run_id, max_steps)
        except PydanticSerializationError as e:
            raise ApiError(
                422,
                f"body.input: the input cannot be stored as JSON ({str(e)[:200]})",
                errors=[{"loc": ["body", "input"], "msg": "not storable as JSON", "type": "json"}],
            ) from None
        if idempotency_key:
            existing = self.store.find_run(run_id)
            if existing is not None:
                return self._same_request(existing, run), False
        try:
            self._store_new(run, step0)
        except RunStateError:  # the same key, admitted by another process meanwhile
            return self._same_request(self.store.get_run(run_id), run), False
        if run.status == "completed":
            done = EventLog(run_id)
            done.append(*dump_event(ev.RunFinished(run_id=run_id, status="completed")), final=True)
            self._retain(run_id, done)
        else:
            self._schedule(run_id, graph, fresh=True)
        return run, True

    def _store_new(self, run: RunRecord, step0: StepRecord) -> None:
        """Store an admitted task's rows (``FleetTaskService`` also enqueues it)."""
        self.store.create_run(run, step0)

    @staticmethod
    def _same_request(existing: RunRecord, new: RunRecord) -> RunRecord:
        old_steps = json.loads(existing.config).get("max_steps")
        new_steps = json.loads(new.config).get("max_steps")
        if (existing.graph, existing.input, old_steps) != (new.graph, new.input, new_steps):
            raise ApiError(
                409,
                f"this idempotency key already names task {existing.id}, created with a "
                "different graph, input or max_steps; use a new key for a new task",
                title="Idempotency key reused",
            )
        return existing

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

    # -- control ---------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        return self.store.get_run(run_id)

    async def cancel(self, run_id: str) -> RunRecord:
        run = self.store.get_run(run_id)
        x = self._live.get(run_id)
        if x is not None and x.task is not None:
            if x.cancel_reason is None:
                x.cancel_reason = "cancelled"
            x.task.cancel()
            await asyncio.wait({x.task}, timeout=CANCEL_WAIT_SECONDS)
            run = self.store.get_run(run_id)
            if run.status == "completed":
                raise ApiError(409, f"task {run_id} completed before the cancel took effect")
            if run.status in ("paused", "failed"):  # it stopped on its own meanwhile
                run = self.store.update_run(run_id, status="cancelled", error=x.cancel_reason)
            return run
        if run.status == "completed":
            raise ApiError(409, f"task {run_id} is completed; there is nothing to cancel")
        if run.status == "cancelled":
            return run
        if run.status in ("running", "queued"):
            # not executing here (another process, or a graph this server does not serve):
            # a live executor stops at its next node boundary
            self.store.send_signal(run_id, "cancel")
        return self.store.update_run(run_id, status="cancelled", error="cancelled")

    async def settled(self, run_id: str, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` s) for this server's execution of ``run_id`` to end
        when the store already says it stopped (paused, failed, cancelled): between the
        engine recording a pause and the execution leaving ``_live`` there is a short
        window in which a resume would otherwise be refused."""
        x = self._live.get(run_id)
        if x is None or x.task is None or x.task.done():
            return
        if self.store.get_run(run_id).status not in _RESUMABLE:
            return
        try:
            await asyncio.wait_for(asyncio.shield(x.task), timeout)
        except (TimeoutError, asyncio.CancelledError):
            pass

    def resume(
        self,
        run_id: str,
        *,
        value: Any = None,
        answer: bool = False,
        answers: dict[str, Any] | None = None,
        max_steps: int | None = None,
        update: dict[str, Any] | None = None,
        goto: list[str] | None = None,
        rerun_step: bool = False,
    ) -> RunRecord:
        run = self.store.get_run(run_id)
        if run_id in self._live and run.status in _RESUMABLE:
            raise ApiError(
                409,
                f"task {run_id} is {run.status} but its execution is still finishing here; "
                "retry the resume in a moment",
            )
        if run_id in self._live or run.status not in _RESUMABLE:
            raise ApiError(
                409,
                f"task {run_id} is {run.status}; only a paused, failed, cancelled or dead task "
                "can be resumed",
            )
        graph = self.graphs.get(run.graph)
        if graph is None:
            raise ApiError(
                409, f"task {run_id} runs graph '{run.graph}', which this server does not serve"
            )
        graph.check_graph(run)
        if update is not None or goto:
            edit_before_resume(graph, run_id, update, goto, answer or bool(answers), rerun_step)
        if answer or answers:
            # answered now, in the store: a crash before a slot frees keeps the answer
            try:
                answer_interrupts(
                    self.store,
                    run_id,
                    value=value if answer else UNSET,
                    answers=answers,
                )
            except RunStateError as e:
                raise ApiError(409, e.message, code=e.code) from None
        run = self.store.update_run(run_id, status="queued", error=None)
        self._schedule(run_id, graph, fresh=False, max_steps=max_steps, rerun_step=rerun_step)
        return run

    # -- reading --------------------------------------------------------------------------

    def summary(self, run: RunRecord) -> TaskSummary:
        return TaskSummary(**summary_fields(run))

    def detail(self, run_id: str) -> TaskDetail:
        run = self.store.get_run(run_id)
        graph = self.graphs.get(run.graph)
        state: dict[str, Any] | None = None
        steps: list[StepEntry] = []
        if graph is not None and graph.fingerprint == run.fingerprint:
            state = graph.get_state(run_id).model_dump(mode="json")
        if graph is not None:
            steps = [
                StepEntry(
                    step=h.step,
                    node=h.node,
                    task_path=h.task_path,
                    update=h.update,
                    effects=h.effects,
                    started_at=h.started_at,
                    finished_at=h.finished_at,
                    duration_ms=h.duration_ms,
                )
                for h in graph.history(run_id)
            ]
        interrupts = [
            Interrupt(
                id=p.id,
                node=p.node,
                step=p.step,
                task_path=p.task_path,
                seq=p.seq,
                payload=p.payload,
                deadline=p.deadline,
            )
            for p in pending_interrupts(self.store, run_id)
        ]
        return TaskDetail(
            **summary_fields(run),
            state=state,
            steps=steps,
            interrupts=interrupts,
            usage=run_usage(self.store, run_id),
        )

    def page(
        self,
        *,
        status: str | None,
        graph: str | None,
        limit: int,
        cursor: str | None,
        since: float | None = None,
        until: float | None = None,
    ) -> TaskPage:
        after = decode_cursor(cursor) if cursor else None
        if until is not None and (after is None or after[0] >= until):
            after = (until, "\U0010ffff")  # past every id created at `until`: strictly before
        rows, more = page_runs(self.store, status=status, graph=graph, limit=limit, after=after)
        if since is not None and rows and rows[-1].created_at < since:
            rows, more = [r for r in rows if r.created_at >= since], False  # newest first
        stats = self.stats
        return TaskPage(
            items=[
                self.summary(r).model_copy(update=stats(r)) if stats else self.summary(r)
                for r in rows
            ],
            next_cursor=encode_cursor(rows[-1]) if more and rows else None,
        )

    async def events(
        self, run_id: str, last_event_id: str | None, mode: Sequence[str] | None = None
    ) -> AsyncIterator[bytes]:
        """Server-sent events of the task's current (or last) execution in this process,
        ending with run_finished; for a task this process does not hold the log of, its
        events as stored by whichever process executes it (``RunFollower``). ``mode``
        selects kinds as ``stream(mode=...)`` does; with ``values``, each step_finished
        carries the state after the step, read from the store for this stream only."""
        pick = StreamPick(self, run_id, mode)
        log_ = self._logs.get(run_id)
        if log_ is None:
            # not executed by this process (another service process, a worker, a script):
            # its events come from the store
            async for chunk in self.follower.stream(
                run_id, last_event_id, lambda: self._closing, pick
            ):
                yield chunk
            return
        index = log_.start_index(last_event_id)
        quiet_since = time.monotonic()
        while True:
            for i, kind, data in log_.since(index):
                index = i + 1
                picked = pick(kind, data)
                if picked is None:
                    continue
                yield sse(kind, picked, f"{log_.epoch}:{i}")
                quiet_since = time.monotonic()
            if log_.done and index >= log_.end:
                return
            if self._closing:
                return
            await log_.wait(index, timeout=1.0)
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield sse_comment("keepalive")
