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

This module is the service's API (admit, cancel, resume, read, stream); executing the
tasks (slots, timeouts, outcomes, recovery, shutdown) is its base, ``_execution.TaskRunner``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from flowstate import events as ev
from flowstate.checkpoints import RunRecord, StepRecord
from flowstate.engine import UNSET, CompiledGraph, answer_interrupts, pending_interrupts
from flowstate.errors import RunStateError
from flowstate.nodes import run_usage

from ._editing import StreamPick, edit_before_resume
from ._execution import KEEPALIVE_SECONDS, TaskRunner
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
    page_runs,
    summary_fields,
)
from ._stream import EventLog, dump_event, sse, sse_comment

__all__ = ["TaskService", "admission_rows"]

CANCEL_WAIT_SECONDS = 10.0
"""How long a cancel request waits for the engine to record ``cancelled``."""
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


class TaskService(TaskRunner):
    """Admits, runs, cancels and resumes tasks over one store and a set of graphs."""

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
