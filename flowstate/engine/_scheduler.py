"""The loop of one run, top to bottom: from a resume point, step after step, until the
run completes, pauses, is cancelled or fails.

Each turn of the loop: check what may stop the run before the step (signals from other
processes, limits, budgets, breakpoints), run the step's pending activations concurrently
(``Activation``), let the step settle each one as it finishes (``Step``: commit, and with
the last commit the close), then stop on a failure or an interrupt, or move to the next
step. The pure step algebra (merge, routing) is ``_plan.py``; the store is only reached
through ``CheckpointStore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flowstate import events as ev
from flowstate.checkpoints import CheckpointStore, InterruptRecord
from flowstate.errors import FlowstateError, NodeFailed, RouteError, StepCloseFailed

from ._activation import Activation
from ._context import Interrupted
from ._edit import EDIT_NODE, edit_by, next_step_row, plan_edit
from ._interrupts import pending_interrupts
from ._outcome import Committed, Failure, Outcome
from ._point import ResumePoint
from ._scope import RunScope
from ._step import Step
from ._timers import pause_reason
from ._types import Task

if TYPE_CHECKING:
    from ._builder import GraphIR
    from ._event_log import EventLog
    from ._group import CommitGroup
    from ._memory import MemoryBinding

__all__ = ["SIGNAL_POLL_SECONDS", "Execution"]

_JITTER = random.Random()
"""The retry-jitter source of runs given none (``CompiledGraph.rng`` unset): one per
process, not a Mersenne Twister (2.5 kB) per run in flight (bench W10)."""

SIGNAL_POLL_SECONDS = 0.05
"""How often a running run looks for pause/cancel requests from other processes (at
node boundaries): the cross-process pause/cancel latency is at most this plus one node."""


class Execution:
    """Drives one run from a resume point to completion, a pause, or a failure."""

    def __init__(
        self,
        point: ResumePoint,
        *,
        store: CheckpointStore,
        ir: GraphIR,
        services: dict[str, Any],
        memory: Callable[[], MemoryBinding],
        emit: Callable[[Any], None],
        listening: bool,
        rng: random.Random | None,
        step_state: bool = False,
        log: EventLog | None = None,
        group: CommitGroup | None = None,
    ) -> None:
        self.scope = RunScope(
            run=point.run,
            store=store,
            ir=ir,
            config=point.config,
            services=services,
            memory=memory,
            journal=point.journal,
            emit=emit,
            listening=listening,
            rng=rng or _JITTER,
            resumed_step=point.step.step if point.resumed else None,
            cancelled=self._cancel_seen,
            custom_reducers=frozenset(ir.schema.custom_reducer_fields()),
            observer=point.observer,
            log=log,
            group=group,
        )
        self.progress = point.progress
        """The run's counters (advanced by each step as it commits)."""
        self.current = Step.from_row(
            self.scope, point.step, point.state, point.committed, point.progress
        )
        """The step being run."""
        c = point.config.max_concurrency
        self._slots = asyncio.Semaphore(c) if c else None
        self._signals_checked = -1.0
        self._cancel_requested = False
        self._step_state = step_state
        """Fill ``step_finished.state`` (a ``"values"`` subscription asked for it)."""
        self._replaying = self.scope.replay
        self._edits_replayed = -1
        """Replay: the last step whose recorded edits were applied."""

    # -- the loop ------------------------------------------------------------------------

    async def drive(self) -> Outcome:
        """Run step after step; every exit records the run's status first."""
        scope = self.scope
        while True:
            if self._replaying:
                self._replay_edits()
            step = self.current
            if not step.tasks:
                return self._finish("completed", None)
            pending = step.pending()
            if pending:
                stop = self._check_before(step, pending)
                if stop is not None:
                    return stop
                await self._run_activations(step, pending)
                if step.stopped:
                    return self._stopped(step, pending)
            closed = step.close()
            if closed is None:  # the merge failed after every activation committed
                return self._stopped(step, step.tasks)
            if scope.listening:
                scope.emit(
                    ev.StepFinished(
                        run_id=scope.run_id,
                        step=step.number,
                        nodes=[t.node for t in step.tasks],
                        next=[t.path for t in closed.tasks],
                        state=closed.state.model_dump(mode="json") if self._step_state else None,
                    )
                )
            elif scope.log is not None:
                scope.log.step_finished(
                    step.number, [t.node for t in step.tasks], [t.path for t in closed.tasks]
                )
            self.current = Step(
                scope, step.number + 1, closed.state, closed.tasks, closed.joins, {}, self.progress
            )
            if self._replaying:
                self._replay_edits()
            if not self.current.tasks:  # the close just committed recorded "completed"
                return self._finish("completed", None, already=not self._replaying)
            hit = [t.node for t in step.tasks if t.node in scope.config.interrupt_after]
            if hit:
                return self._pause(f"breakpoint after '{hit[0]}'")

    def _replay_edits(self) -> None:
        """Replay: apply the edits recorded in the current step (``update_state``), as
        recorded inputs, re-validated and compared with the recording like any write; a
        routing edit closes the step (and the next step's edits follow)."""
        scope, journal = self.scope, self.scope.journal
        assert journal is not None
        while True:
            step = self.current
            if step.number <= self._edits_replayed:
                return
            self._edits_replayed = step.number
            edits = journal.edits(scope.run_id, step.number)
            if not edits:
                return
            for n, w in enumerate(edits, 1):
                update = scope.schema.load_update(w.update)
                edit = plan_edit(
                    scope.ir,
                    scope.run_id,
                    step.number,
                    step.state,
                    step.joins,
                    update,
                    scope.schema.dump_update(w.node, update),
                    n=n,
                    as_node=None if w.node == EDIT_NODE else w.node,
                    goto=json.loads(w.goto),
                    by=edit_by(w),
                    now=w.finished_at,
                )
                if journal.check is not None:
                    journal.check(scope.run_id, edit.write, edit.update)
                if edit.next_tasks is None:
                    scope.store.commit(scope.run_id, writes=[edit.write])
                    step.state = edit.state
                    continue
                row = next_step_row(scope.run_id, step.number, edit, w.finished_at)
                status = "running" if edit.next_tasks else "completed"
                scope.store.commit(
                    scope.run_id,
                    writes=[edit.write],
                    step=row,
                    run_fields={"head_step": step.number + 1, "status": status},
                )
                joins = edit.next_joins or {}
                self.current = Step(
                    scope, step.number + 1, edit.state, edit.next_tasks, joins, {}, self.progress
                )
                break
            else:
                return

    async def _run_activations(self, step: Step, pending: list[Task]) -> None:
        """Run ``pending`` concurrently; each is settled by the step as it finishes.
        Errors that are not the node's (the store failed, replay found a divergence, a
        simulated crash, cancellation) propagate: nothing more is recorded."""
        step.begin(pending)
        results: list[Any]
        if len(pending) == 1:
            try:
                results = [await self._activate(step, pending[0])]
            except (Exception, Interrupted) as e:
                results = [e]
        else:
            coros = [self._activate(step, t) for t in pending]
            results = await asyncio.gather(*coros, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(
                r, Exception | Interrupted | asyncio.CancelledError
            ):
                raise r  # a simulated crash (tests) or KeyboardInterrupt: record nothing
        for r in results:
            if isinstance(r, asyncio.CancelledError):
                raise r
        for r in results:
            if isinstance(r, Exception) and not isinstance(r, Failure):
                raise r

    async def _activate(self, step: Step, task: Task) -> Committed | Failure | Interrupted:
        async with self._slots or contextlib.nullcontext():
            outcome = await Activation(self.scope, step, task).run()
            return await step.settle(outcome, task)

    # -- before a step -------------------------------------------------------------------

    def _check_before(self, step: Step, pending: list[Task]) -> Outcome | None:
        """Signals, ``max_steps``, budgets, ``max_visits`` and breakpoints, in that order."""
        scope, store, p = self.scope, self.scope.store, self.progress
        signals: set[str] = set()
        now = time.monotonic()
        if now - self._signals_checked >= SIGNAL_POLL_SECONDS:
            self._signals_checked = now
            signals = store.signals(scope.run_id)
        if "cancel" in signals:
            store.clear_signals(scope.run_id)
            return self._finish("cancelled", "cancelled on request")
        if "pause" in signals:
            store.clear_signals(scope.run_id)
            return self._pause("pause requested")
        if p.activations + len(pending) > scope.config.max_steps:
            return self._pause(self._limit_reason())
        lim = scope.config.limits
        used = p.tokens_in + p.tokens_out
        if lim.token_budget is not None and used >= lim.token_budget:
            return self._pause(
                f"token budget: {used:,} of {lim.token_budget:,} tokens used; resume with a "
                "higher budget: resume(run_id, limits=Limits(token_budget=N))"
            )
        if lim.cost_budget is not None:
            cost = p.cost_usd
            if cost >= lim.cost_budget:
                return self._pause(
                    f"cost budget: ${cost:.4f} of ${lim.cost_budget:.4f} used; resume with a "
                    "higher budget: resume(run_id, limits=Limits(cost_budget=X))"
                )
        for t in pending:
            spec = scope.ir.nodes[t.node]
            if spec.max_visits is not None and p.visits.get(t.node, 0) >= spec.max_visits:
                return self._pause(
                    f"max_visits: node '{t.node}' already ran {p.visits.get(t.node, 0)} "
                    f"times (max_visits={spec.max_visits}); raise it and resume"
                )
        if scope.config.interrupt_before:
            passed = {
                (i.task_path, i.seq)
                for i in store.interrupts(scope.run_id, step.number)
                if i.answer is not None
            }
            for t in pending:
                if t.node in scope.config.interrupt_before and (t.path, -1) not in passed:
                    reason = f"breakpoint before '{t.node}'"
                    store.record_interrupt(
                        InterruptRecord(
                            run_id=scope.run_id,
                            step=step.number,
                            task_path=t.path,
                            seq=-1,
                            payload=json.dumps({"breakpoint": "before", "node": t.node}),
                            created_at=time.time(),
                        ),
                        {"status": "paused", "error": reason, "head_step": step.number},
                    )
                    scope.emit(ev.RunFinished(run_id=scope.run_id, status="paused", reason=reason))
                    return Outcome("paused", step.state, reason, step.number)
        return None

    def _limit_reason(self) -> str:
        p = self.progress
        loop = sorted(((n, c) for n, c in p.visits.items() if c > 1), key=lambda x: -x[1])
        where = ", ".join(f"'{n}' ran {c} times" for n, c in loop[:6]) or "no node repeated"
        return (
            f"max_steps={self.scope.config.max_steps} reached after {p.activations} "
            f"activations ({where}); resume with a higher limit: `flowstate resume "
            f"{self.scope.run_id} --max-steps N`"
        )

    def _cancel_seen(self) -> bool:
        if not self._cancel_requested and "cancel" in self.scope.store.signals(self.scope.run_id):
            self._cancel_requested = True
        return self._cancel_requested

    # -- ends ----------------------------------------------------------------------------

    def _stopped(self, step: Step, pending: list[Task]) -> Outcome:
        """A failure (raised as ``NodeFailed``) or interrupts (a pause) ended the step."""
        scope = self.scope
        failure = step.failures[0] if step.failures else None
        if failure is None and step.close_error is not None:
            failure = Failure(pending[-1], step.close_error)
        if failure is not None:
            exc = failure.exc
            if isinstance(exc, FlowstateError):
                detail = exc.message
            else:
                detail = f"{type(exc).__name__}: {exc}"
            err: FlowstateError
            if isinstance(exc, RouteError):  # blame the router, not the node before it
                err = exc.in_run(scope.run_id, step.number)
            elif exc is step.close_error:
                err = StepCloseFailed(scope.run_id, step.number, failure.task.node, exc)
                err.__cause__ = exc
            else:
                err = NodeFailed(scope.run_id, step.number, failure.task.node, detail)
                err.__cause__ = exc
            scope.store.update_run(
                scope.run_id, status="failed", error=err.message, head_step=step.number
            )
            scope.emit(ev.RunFinished(run_id=scope.run_id, status="failed", reason=err.message))
            raise err
        waiting = pending_interrupts(scope.store, scope.run_id)
        if waiting:
            reason = f"interrupt in '{waiting[0].node}'"
            if len(waiting) > 1:
                reason += f" (+{len(waiting) - 1} more)"
        elif (slept := pause_reason(step.interrupts)) is not None:
            reason = slept  # a durable timer (ctx.sleep): the run row holds its wake-up time
        else:  # a subgraph stopped at a breakpoint or a limit: its reason says which
            reason = f"subgraph in '{step.interrupts[0][0].node}' paused"
            sub = json.loads(step.interrupts[0][1].payload)
            if isinstance(sub, dict) and sub.get("reason"):
                reason += f": {sub['reason']}"
        scope.store.update_run(scope.run_id, status="paused", error=reason, head_step=step.number)
        scope.emit(
            ev.RunFinished(run_id=scope.run_id, status="paused", reason=reason, usage=self._usage())
        )
        return Outcome("paused", step.state, reason, step.number, list(waiting))

    def _usage(self) -> dict[str, int]:
        """Tokens of this run and its subgraphs (committed activations)."""
        base, p = self.scope.config.token_base, self.progress
        return {
            "input_tokens": p.tokens_in - base[0],
            "output_tokens": p.tokens_out - base[1],
        }

    def _pause(self, reason: str) -> Outcome:
        scope, step = self.scope, self.current
        scope.store.update_run(scope.run_id, status="paused", error=reason, head_step=step.number)
        scope.emit(
            ev.RunFinished(run_id=scope.run_id, status="paused", reason=reason, usage=self._usage())
        )
        return Outcome("paused", step.state, reason, step.number)

    def _finish(self, status: str, reason: str | None, already: bool = False) -> Outcome:
        """``already``: the commit that closed the last step recorded ``completed`` (with
        the head step, no error and the time): no transaction of its own is needed."""
        scope, step = self.scope, self.current
        if not already or status != "completed":
            scope.store.update_run(scope.run_id, status=status, error=reason, head_step=step.number)
        scope.emit(
            ev.RunFinished(run_id=scope.run_id, status=status, reason=reason, usage=self._usage())
        )
        return Outcome(status, step.state, reason, step.number)

    @property
    def state(self) -> BaseModel:
        """The input state of the current step."""
        return self.current.state
