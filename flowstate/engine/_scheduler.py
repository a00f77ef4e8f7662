"""The loop around the step algebra: runs activations, commits them, advances steps.

Bulk-synchronous: every activation of a step reads the step's input state and runs
concurrently; each finished activation is committed at once in its own transaction
(why not one transaction per step: a crash then loses only the activations that were
still running, never the finished ones); when the last one finishes, the updates merge
in task order and the next step's row is committed with it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flowstate.checkpoints import InterruptRecord, RunRecord, StepRecord
from flowstate.errors import FlowstateError, NodeFailed, PayloadTooLarge

from . import _events as ev
from ._activation import ActivationMixin
from ._context import Interrupted
from ._interrupts import pending_interrupts
from ._journal import JournalSource
from ._limits import Limits
from ._outcome import Committed, Failure, Outcome, goto_from_json, goto_to_json
from ._plan import RouteError, plan_next
from ._rows import parse
from ._types import Task

if TYPE_CHECKING:
    from flowstate.checkpoints import SQLiteStore

    from ._app import CompiledGraph

__all__ = [
    "Committed",
    "Execution",
    "JournalSource",
    "Outcome",
    "goto_from_json",
    "goto_to_json",
]

SNAPSHOT_MIN_BYTES = 1 << 20
"""Never snapshot before this many update bytes have accumulated: replaying up to 1 MiB
of JSON updates costs a few milliseconds, and storage must grow with the change."""
SIGNAL_POLL_SECONDS = 0.05
"""How often a running run looks for pause/cancel requests from other processes (at
node boundaries): the cross-process pause/cancel latency is at most this plus one node."""
SNAPSHOT_MAX_STEPS = 1000
"""…but snapshot at least every this many steps, to bound rebuild work for long runs."""


class Execution(ActivationMixin):
    """Drives one run from a step row to completion, a pause, or a failure."""

    def __init__(
        self,
        app: CompiledGraph[Any],
        store: SQLiteStore,
        run: RunRecord,
        *,
        step: StepRecord,
        state: BaseModel,
        committed: dict[str, Committed],
        emit: Callable[[Any], None],
        max_steps: int,
        activations: int,
        visits: dict[str, int],
        interrupt_before: tuple[str, ...] = (),
        interrupt_after: tuple[str, ...] = (),
        journal: JournalSource | None = None,
        bytes_since_snapshot: int = 0,
        steps_since_snapshot: int = 0,
        last_snapshot_bytes: int = 0,
        rng: random.Random | None = None,
        listening: bool = True,
        max_concurrency: int | None = None,
        limits: Limits | None = None,
        tokens: tuple[int, int] = (0, 0),
    ) -> None:
        self.limits = limits or Limits()
        self._custom = app.ir.schema.custom_reducer_fields()
        self.tokens_in, self.tokens_out = tokens
        self.token_base: tuple[int, int] = (0, 0)
        """Tokens the parent run tree had used when this (child) run started: counted by
        its budgets, not reported as its own usage."""
        self.listening = listening
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._signals_checked = -1.0
        self._seq_tasks: list[Task] | None = None
        self._seq_map: dict[str, int] = {}
        self.app = app
        self.ir = app.ir
        self.schema = app.ir.schema
        self.store = store
        self.run = run
        self.run_id = run.id
        self.step = step.step
        self.tasks = [
            Task.from_json(t)  # type: ignore[arg-type]
            for t in parse("tasks", step.tasks, "steps", run.id, step.step)
        ]
        self.joins: dict[str, list[str]] = parse("joins", step.joins, "steps", run.id, step.step)
        self.state = state
        self.committed = committed
        self.emit = emit
        self.max_steps = max_steps
        self.activations = activations
        self.visits = visits
        self.interrupt_before = interrupt_before
        self.interrupt_after = interrupt_after
        self.journal = journal
        self.replay = journal is not None and journal.strict
        self.bytes_since_snapshot = bytes_since_snapshot
        self.steps_since_snapshot = steps_since_snapshot
        self.last_snapshot_bytes = last_snapshot_bytes
        self.rng = rng or random.Random()
        self._closed: tuple[BaseModel, list[Task], dict[str, list[str]]] | None = None
        self._close_error: BaseException | None = None
        self._remaining = 0
        self._failed = False
        self._interrupts: list[tuple[Task, Interrupted]] = []
        self._cancel_requested = False
        self.resumed_step: int | None = None
        """The step a resume started in: only there can a journal or answers exist."""

    # -- the loop ------------------------------------------------------------------------

    async def drive(self) -> Outcome:
        while True:
            if not self.tasks:
                return self._finish("completed", None)
            pending = [t for t in self.tasks if t.path not in self.committed]
            if pending:
                stop = self._check_before(pending)
                if stop is not None:
                    return stop
                await self._run_step(pending)
                if self._failed or self._interrupts:
                    return self._after_failures()
            if self._closed is None:
                self._close_step(standalone=True)
            assert self._closed is not None
            merged, next_tasks, joins = self._closed
            if self.listening:
                self.emit(
                    ev.StepFinished(
                        run_id=self.run_id,
                        step=self.step,
                        nodes=[t.node for t in self.tasks],
                        next=[t.path for t in next_tasks],
                    )
                )
            finished_nodes = [t.node for t in self.tasks]
            self.step += 1
            self.state, self.tasks, self.joins = merged, next_tasks, joins
            self.committed = {}
            self._closed = None
            if not self.tasks:
                return self._finish("completed", None, already=True)
            hit = [n for n in finished_nodes if n in self.interrupt_after]
            if hit:
                return self._pause(f"breakpoint after '{hit[0]}'")

    def _check_before(self, pending: list[Task]) -> Outcome | None:
        signals: set[str] = set()
        now = time.monotonic()
        if now - self._signals_checked >= SIGNAL_POLL_SECONDS:
            self._signals_checked = now
            signals = self.store.signals(self.run_id)
        if "cancel" in signals:
            self.store.clear_signals(self.run_id)
            return self._finish("cancelled", "cancelled on request")
        if "pause" in signals:
            self.store.clear_signals(self.run_id)
            return self._pause("pause requested")
        if self.activations + len(pending) > self.max_steps:
            return self._pause(self._limit_reason())
        lim = self.limits
        used = self.tokens_in + self.tokens_out
        if lim.token_budget is not None and used >= lim.token_budget:
            return self._pause(
                f"token budget: {used:,} of {lim.token_budget:,} tokens used; resume with a "
                "higher budget: resume(run_id, limits=Limits(token_budget=N))"
            )
        if lim.cost_budget is not None:
            cost = lim.cost(self.tokens_in, self.tokens_out)
            if cost >= lim.cost_budget:
                return self._pause(
                    f"cost budget: ${cost:.4f} of ${lim.cost_budget:.4f} used; resume with a "
                    "higher budget: resume(run_id, limits=Limits(cost_budget=X))"
                )
        for t in pending:
            spec = self.ir.nodes[t.node]
            if spec.max_visits is not None and self.visits.get(t.node, 0) >= spec.max_visits:
                return self._pause(
                    f"max_visits: node '{t.node}' already ran {self.visits.get(t.node, 0)} "
                    f"times (max_visits={spec.max_visits}); raise it and resume"
                )
        if self.interrupt_before:
            passed = {
                (i.task_path, i.seq)
                for i in self.store.interrupts(self.run_id, self.step)
                if i.answer is not None
            }
            for t in pending:
                if t.node in self.interrupt_before and (t.path, -1) not in passed:
                    self.store.record_interrupt(
                        InterruptRecord(
                            run_id=self.run_id,
                            step=self.step,
                            task_path=t.path,
                            seq=-1,
                            payload=json.dumps({"breakpoint": "before", "node": t.node}),
                            created_at=time.time(),
                        ),
                        {
                            "status": "paused",
                            "error": f"breakpoint before '{t.node}'",
                            "head_step": self.step,
                        },
                    )
                    self.emit(
                        ev.RunFinished(
                            run_id=self.run_id,
                            status="paused",
                            reason=f"breakpoint before '{t.node}'",
                        )
                    )
                    return Outcome("paused", self.state, f"breakpoint before '{t.node}'", self.step)
        return None

    def _limit_reason(self) -> str:
        loop = sorted(((n, c) for n, c in self.visits.items() if c > 1), key=lambda x: -x[1])
        where = ", ".join(f"'{n}' ran {c} times" for n, c in loop[:6]) or "no node repeated"
        return (
            f"max_steps={self.max_steps} reached after {self.activations} activations "
            f"({where}); resume with a higher limit: `flowstate resume {self.run_id} "
            "--max-steps N`"
        )

    async def _run_step(self, pending: list[Task]) -> None:
        self._remaining = len(pending)
        self._failed = False
        self._interrupts = []
        self._close_error = None
        results: list[Any]
        if len(pending) == 1:
            try:
                results = [await self._activate(pending[0])]
            except (Exception, Interrupted) as e:
                results = [e]
        else:
            coros = [self._limited(t) for t in pending]
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
                raise r  # the store failed, or replay found a divergence: not the node's fault
        self._failures = [r for r in results if isinstance(r, Failure)]
        if self._close_error is not None and not self._failures:
            self._failures = [Failure(pending[-1], self._close_error)]
        self._failed = bool(self._failures)

    def _after_failures(self) -> Outcome:
        if self._failed:
            f = self._failures[0]
            exc = f.exc
            if isinstance(exc, FlowstateError):
                detail = exc.message
            else:
                detail = f"{type(exc).__name__}: {exc}"
            err: FlowstateError
            if isinstance(exc, RouteError):  # blame the router, not the node before it
                err = exc.in_run(self.run_id, self.step)
            else:
                err = NodeFailed(self.run_id, self.step, f.task.node, detail)
                err.__cause__ = exc
            self.store.update_run(
                self.run_id, status="failed", error=err.message, head_step=self.step
            )
            self.emit(ev.RunFinished(run_id=self.run_id, status="failed", reason=err.message))
            raise err
        pending = pending_interrupts(self.store, self.run_id)
        if pending:
            reason = f"interrupt in '{pending[0].node}'"
            if len(pending) > 1:
                reason += f" (+{len(pending) - 1} more)"
        else:  # a subgraph stopped at a breakpoint or a limit: its reason says which
            reason = f"subgraph in '{self._interrupts[0][0].node}' paused"
            sub = json.loads(self._interrupts[0][1].payload)
            if isinstance(sub, dict) and sub.get("reason"):
                reason += f": {sub['reason']}"
        self.store.update_run(self.run_id, status="paused", error=reason, head_step=self.step)
        self.emit(
            ev.RunFinished(run_id=self.run_id, status="paused", reason=reason, usage=self._usage())
        )
        return Outcome("paused", self.state, reason, self.step, pending)

    def _usage(self) -> dict[str, int]:
        """Tokens of this run and its subgraphs (committed activations)."""
        return {
            "input_tokens": self.tokens_in - self.token_base[0],
            "output_tokens": self.tokens_out - self.token_base[1],
        }

    def _pause(self, reason: str) -> Outcome:
        self.store.update_run(self.run_id, status="paused", error=reason, head_step=self.step)
        self.emit(
            ev.RunFinished(run_id=self.run_id, status="paused", reason=reason, usage=self._usage())
        )
        return Outcome("paused", self.state, reason, self.step)

    def _finish(self, status: str, reason: str | None, already: bool = False) -> Outcome:
        shrink = getattr(self.store, "shrink_wal", None)
        if shrink is not None and "/" not in self.run_id and len(self.app._tasks) <= 1:
            shrink()  # the last run of this graph to finish folds the WAL back (one fsync)
        if not already or status != "completed" or self.run.status != "completed":
            self.store.update_run(self.run_id, status=status, error=reason, head_step=self.step)
        self.emit(
            ev.RunFinished(run_id=self.run_id, status=status, reason=reason, usage=self._usage())
        )
        return Outcome(status, self.state, reason, self.step)

    # -- one activation --------------------------------------------------------------------

    def _seq_of(self, path: str) -> int:
        if len(self.tasks) == 1:
            return 0
        if self._seq_tasks is not self.tasks:  # one map per step: fan-outs stay linear
            self._seq_map = {t.path: i for i, t in enumerate(self.tasks)}
            self._seq_tasks = self.tasks
        return self._seq_map[path]

    def _close_step(self, standalone: bool) -> tuple[StepRecord, dict[str, Any]]:
        ordered = [self.committed[t.path] for t in self.tasks]
        merged = self.schema.apply(
            self.state, [(c.task.node, c.update) for c in ordered], self.step
        )
        next_tasks, joins = plan_next(
            self.ir, merged, [(c.task, c.goto) for c in ordered], self.joins
        )
        snapshot: str | None = None
        self.steps_since_snapshot += 1
        if next_tasks and (
            self.bytes_since_snapshot >= max(SNAPSHOT_MIN_BYTES, 2 * self.last_snapshot_bytes)
            or self.steps_since_snapshot >= SNAPSHOT_MAX_STEPS
        ):
            snapshot = self.schema.dump_state(merged)
            if len(snapshot) > self.limits.max_state_bytes:
                raise PayloadTooLarge(
                    f"the state after step {self.step}",
                    len(snapshot),
                    self.limits.max_state_bytes,
                    "max_state_bytes",
                )
            self.last_snapshot_bytes = len(snapshot)
            self.bytes_since_snapshot = 0
            self.steps_since_snapshot = 0
        step_row = StepRecord(
            run_id=self.run_id,
            step=self.step + 1,
            tasks=json.dumps([t.to_json() for t in next_tasks]),
            joins=json.dumps(joins),
            snapshot=snapshot,
            created_at=time.time(),
        )
        run_fields: dict[str, Any] = {
            "head_step": self.step + 1,
            "status": "running" if next_tasks else "completed",
            "error": None,
        }
        self._closed = (merged, next_tasks, joins)
        if standalone:
            self.store.commit(self.run_id, step=step_row, run_fields=run_fields)
        return step_row, run_fields

    # -- helpers ------------------------------------------------------------------------
