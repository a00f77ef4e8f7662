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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic_core
from pydantic import BaseModel, ValidationError

from flowstate.checkpoints import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    StepRecord,
    WriteRecord,
)
from flowstate.errors import FlowstateError, NodeFailed, PayloadTooLarge, UpdateRejected

from . import _events as ev
from ._context import EffectDivergence, Interrupted, NodeContext
from ._limits import Limits
from ._plan import input_for, plan_next
from ._rows import parse
from ._types import END, Command, Send, Task

if TYPE_CHECKING:
    from flowstate.checkpoints import SQLiteStore

    from ._app import CompiledGraph
    from ._nodes import NodeSpec

__all__ = ["Committed", "Execution", "Outcome"]

SNAPSHOT_MIN_BYTES = 1 << 20
"""Never snapshot before this many update bytes have accumulated: replaying up to 1 MiB
of JSON updates costs a few milliseconds, and storage must grow with the change."""
SIGNAL_POLL_SECONDS = 0.05
"""How often a running run looks for pause/cancel requests from other processes (at
node boundaries): the cross-process pause/cancel latency is at most this plus one node."""
SNAPSHOT_MAX_STEPS = 1000
"""…but snapshot at least every this many steps, to bound rebuild work for long runs."""


@dataclass
class Committed:
    task: Task
    write: WriteRecord
    update: dict[str, Any]
    goto: list[str | Send]


@dataclass
class Outcome:
    status: str
    state: BaseModel
    reason: str | None = None
    step: int = 0
    interrupts: list[Any] = field(default_factory=list)


def goto_to_json(goto: list[str | Send]) -> str:
    items = [
        {"node": g.node, "payload": pydantic_core.to_jsonable_python(g.payload)}
        if isinstance(g, Send)
        else g
        for g in goto
    ]
    return json.dumps(items)


def goto_from_json(raw: str, run_id: str = "?", step: int | None = None) -> list[str | Send]:
    return [
        Send(g["node"], g.get("payload")) if isinstance(g, dict) else str(g)
        for g in parse("goto", raw, "writes", run_id, step)
    ]


@dataclass
class JournalSource:
    """Where recorded effects come from when they are not in the run's own journal.

    Replay reads the recorded run (``strict``: a missing or different effect is a
    divergence, and nothing is ever performed live). Fork with ``reuse_effects`` reads the
    parent run at an offset (not strict: a request that differs runs live).
    """

    store: Any
    strict: bool
    step_offset: int = 0
    run_map: Callable[[str], str] = lambda r: r
    check: Callable[[str, WriteRecord, dict[str, Any]], None] | None = None
    """Replay: compare a new write with the recorded one (raises on divergence)."""

    def effects(self, run_id: str, step: int, path: str) -> dict[int, EffectRecord]:
        return {
            e.seq: e
            for e in self.store.effects(self.run_map(run_id), step + self.step_offset, path)
        }

    def answers(self, run_id: str, step: int, path: str) -> dict[int, str]:
        return {
            i.seq: i.answer
            for i in self.store.interrupts(self.run_map(run_id), step + self.step_offset)
            if i.task_path == path and i.answer is not None and i.seq >= 0
        }


_MISSING = object()


def _contribution(reducer: str | None, initial: Any, final: Any) -> Any:
    """What a subgraph added to a field, so the parent's reducer does not count the
    input twice: the appended suffix, the added amount, the changed keys. Fields without
    a built-in reducer get the subgraph's final value."""
    if initial is _MISSING:
        return final
    if reducer == "append" and isinstance(final, list) and isinstance(initial, list):
        if final[: len(initial)] == initial:
            return final[len(initial) :]
    elif reducer == "add":
        try:
            return final - initial
        except TypeError:
            return final
    elif reducer == "merge" and isinstance(final, dict) and isinstance(initial, dict):
        return {k: v for k, v in final.items() if k not in initial or initial[k] != v}
    return final


class _Failure(Exception):
    def __init__(self, task: Task, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.task = task
        self.exc = exc


class Execution:
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
        self.has_interrupts = False

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
            if isinstance(r, Exception) and not isinstance(r, _Failure):
                raise r  # the store failed, or replay found a divergence: not the node's fault
        self._failures = [r for r in results if isinstance(r, _Failure)]
        if self._close_error is not None and not self._failures:
            self._failures = [_Failure(pending[-1], self._close_error)]
        self._failed = bool(self._failures)

    def _after_failures(self) -> Outcome:
        if self._failed:
            f = self._failures[0]
            exc = f.exc
            if isinstance(exc, FlowstateError):
                detail = exc.message
            else:
                detail = f"{type(exc).__name__}: {exc}"
            err = NodeFailed(self.run_id, self.step, f.task.node, detail)
            err.__cause__ = exc
            self.store.update_run(
                self.run_id, status="failed", error=err.message, head_step=self.step
            )
            self.emit(ev.RunFinished(run_id=self.run_id, status="failed", reason=err.message))
            raise err
        payloads = [json.loads(i.payload) for _, i in self._interrupts]
        task = self._interrupts[0][0]
        reason = f"interrupt in '{task.node}'"
        self.store.update_run(self.run_id, status="paused", error=reason, head_step=self.step)
        self.emit(ev.RunFinished(run_id=self.run_id, status="paused", reason=reason))
        return Outcome("paused", self.state, reason, self.step, payloads)

    def _pause(self, reason: str) -> Outcome:
        self.store.update_run(self.run_id, status="paused", error=reason, head_step=self.step)
        self.emit(ev.RunFinished(run_id=self.run_id, status="paused", reason=reason))
        return Outcome("paused", self.state, reason, self.step)

    def _finish(self, status: str, reason: str | None, already: bool = False) -> Outcome:
        shrink = getattr(self.store, "shrink_wal", None)
        if shrink is not None and "/" not in self.run_id and len(self.app._tasks) <= 1:
            shrink()  # the last run of this graph to finish folds the WAL back (one fsync)
        if not already or status != "completed" or self.run.status != "completed":
            self.store.update_run(self.run_id, status=status, error=reason, head_step=self.step)
        self.emit(ev.RunFinished(run_id=self.run_id, status=status, reason=reason))
        return Outcome(status, self.state, reason, self.step)

    # -- one activation --------------------------------------------------------------------

    async def _limited(self, task: Task) -> Committed | _Failure | Interrupted:
        if self._slots is None:
            return await self._activate(task)
        async with self._slots:
            return await self._activate(task)

    async def _activate(self, task: Task) -> Committed | _Failure | Interrupted:
        spec = self.ir.nodes.get(task.node)
        if spec is None:
            return _Failure(task, FlowstateError(f"node '{task.node}' is not in this graph"))
        started = time.time()
        attempt = 0
        journal = self._load_journal(task)
        answers = self._load_answers(task)
        while True:
            attempt += 1
            if self.listening:
                self.emit(
                    ev.NodeStarted(
                        run_id=self.run_id,
                        step=self.step,
                        node=task.node,
                        task_path=task.path,
                        attempt=attempt,
                    )
                )
            ctx = self._context(task, attempt, journal, answers)
            try:
                result = await self._call(spec, task, ctx)
                update, goto = self._normalize(spec, result)
                if self._custom and not self._custom.isdisjoint(update):
                    # a user reducer may refuse the update: find out before committing it
                    self.schema.apply(self.state, [(task.node, update)], self.step)
                raw = self.schema.dump_update(task.node, update)
                if len(raw) > self.limits.max_update_bytes:
                    raise PayloadTooLarge(
                        f"the update of node '{task.node}'",
                        len(raw),
                        self.limits.max_update_bytes,
                        "max_update_bytes",
                    )
                break
            except Interrupted as i:
                self._record_interrupt(task, i)
                self._interrupts.append((task, i))
                return i
            except asyncio.CancelledError:
                raise
            except Exception as e:
                err = e
                if isinstance(e, TimeoutError) and spec.timeout is not None:
                    err = TimeoutError(
                        f"node '{task.node}' overran its timeout of {spec.timeout}s and was "
                        "cancelled; raise timeout= or make the node faster"
                    )
                retry = spec.retry
                if (
                    retry is not None
                    and attempt < retry.max_attempts
                    and isinstance(e, retry.retry_on)
                    and not isinstance(e, UpdateRejected | PayloadTooLarge)
                    and not isinstance(e, EffectDivergence)
                ):
                    delay = retry.delay(attempt, self.rng.random())
                    self._record_attempt(task, attempt, err)
                    self.emit(
                        ev.NodeRetrying(
                            run_id=self.run_id,
                            step=self.step,
                            node=task.node,
                            task_path=task.path,
                            attempt=attempt,
                            error=f"{type(err).__name__}: {err}",
                            delay=delay,
                        )
                    )
                    await asyncio.sleep(delay)
                    continue
                self._record_attempt(task, attempt, err)
                self.emit(
                    ev.NodeFailed_(
                        run_id=self.run_id,
                        step=self.step,
                        node=task.node,
                        task_path=task.path,
                        error=f"{type(err).__name__}: {err}",
                    )
                )
                self._remaining -= 1
                self._failed = True
                return _Failure(task, err)
        return self._commit(task, spec, update, raw, goto, started, ctx)

    def _commit(
        self,
        task: Task,
        spec: NodeSpec,
        update: dict[str, Any],
        raw: str,
        goto: list[str | Send],
        started: float,
        ctx: NodeContext,
    ) -> Committed:
        seq = self._seq_of(task.path)
        write = WriteRecord(
            run_id=self.run_id,
            step=self.step,
            task_path=task.path,
            node=task.node,
            seq=seq,
            update=raw,
            goto=goto_to_json(goto) if goto else "[]",
            usage=json.dumps(ctx.usage) if ctx.usage else "{}",
            started_at=started,
            finished_at=time.time(),
        )
        if self.journal is not None and self.journal.check is not None:
            self.journal.check(self.run_id, write, update)
        c = Committed(task, write, update, goto)
        self.committed[task.path] = c
        self._remaining -= 1
        step_row: StepRecord | None = None
        run_fields: dict[str, Any] | None = None
        if self._remaining == 0 and not self._failed and not self._interrupts:
            try:
                step_row, run_fields = self._close_step(standalone=False)
            except Exception as e:  # a write conflict or a router error: fail after commit
                self._close_error = e
        try:
            if ctx.memory_ops:
                ops = list(ctx.memory_ops)
                apply = self.app._memory_binding().reader.apply_ops
                self.store.commit(
                    self.run_id,
                    writes=[write],
                    step=step_row,
                    run_fields=run_fields,
                    hook=lambda conn: apply(conn, ops),
                )
            else:
                self.store.commit(self.run_id, writes=[write], step=step_row, run_fields=run_fields)
        except BaseException:
            self.committed.pop(task.path, None)
            self._closed = None
            raise
        self.activations += 1
        self.visits[task.node] = self.visits.get(task.node, 0) + 1
        if ctx.usage:
            self.tokens_in += ctx.usage.get("input_tokens", 0)
            self.tokens_out += ctx.usage.get("output_tokens", 0)
        self.bytes_since_snapshot += len(raw)
        if self.listening:
            self.emit(
                ev.NodeFinished(
                    run_id=self.run_id,
                    step=self.step,
                    node=task.node,
                    task_path=task.path,
                    update=json.loads(raw),
                    duration_ms=(write.finished_at - started) * 1000,
                )
            )
        return c

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

    def _context(
        self, task: Task, attempt: int, journal: dict[int, EffectRecord], answers: dict[int, str]
    ) -> NodeContext:
        def emit(item: Any) -> None:
            if item[0] == "effect":
                _, seq, name, replayed, *rest = item
                diverged = bool(rest and rest[0])
                if diverged:
                    self._record_attempt(task, 0, EffectDivergence(seq, name, None, "changed"))
                self.emit(
                    ev.EffectRecorded(
                        run_id=self.run_id,
                        step=self.step,
                        task_path=task.path,
                        seq=seq,
                        name=name,
                        replayed=replayed,
                        diverged=diverged,
                    )
                )
            elif item[0] == "token":
                self.emit(
                    ev.Token(run_id=self.run_id, step=self.step, task_path=task.path, text=item[1])
                )

        return NodeContext(
            run_id=self.run_id,
            step=self.step,
            task_path=task.path,
            node=task.node,
            attempt=attempt,
            journal=journal,
            answers=answers,
            record=self.store.record_effect,
            emit=emit,
            replay=self.replay,
            cancelled=self._cancel_seen,
            services=self.app.services,
            max_effect_bytes=self.limits.max_effect_bytes,
            memory_binding=self.app._memory_binding,
        )

    def _load_journal(self, task: Task) -> dict[int, EffectRecord]:
        own: dict[int, EffectRecord] = {}
        if self.resumed_step == self.step:  # a step this process planned has no journal yet
            own = {e.seq: e for e in self.store.effects(self.run_id, self.step, task.path)}
        if self.journal is not None and not own:
            own = self.journal.effects(self.run_id, self.step, task.path)
        for e in own.values():  # storage corruption is reported as such, never as a node error
            parse("json", e.request, "effects", e.run_id, e.step)
            parse("json", e.response, "effects", e.run_id, e.step)
        return own

    def _cancel_seen(self) -> bool:
        if self._cancel_requested:
            return True
        if "cancel" in self.store.signals(self.run_id):
            self._cancel_requested = True
        return self._cancel_requested

    def _load_answers(self, task: Task) -> dict[int, str]:
        if self.replay and self.journal is not None:
            return self.journal.answers(self.run_id, self.step, task.path)
        if not self.has_interrupts or self.resumed_step != self.step:
            return {}
        answers = {
            i.seq: i.answer
            for i in self.store.interrupts(self.run_id, self.step)
            if i.task_path == task.path and i.answer is not None and i.seq >= 0
        }
        for a in answers.values():
            parse("json", a, "interrupts", self.run_id, self.step)
        return answers

    def _record_interrupt(self, task: Task, i: Interrupted) -> None:
        self.store.record_interrupt(
            InterruptRecord(
                run_id=self.run_id,
                step=self.step,
                task_path=task.path,
                seq=i.seq,
                payload=i.payload,
                created_at=time.time(),
            ),
            {"status": "paused", "error": f"interrupt in '{task.node}'", "head_step": self.step},
        )

    def _record_attempt(self, task: Task, attempt: int, err: BaseException) -> None:
        self.store.record_attempt(
            AttemptRecord(
                run_id=self.run_id,
                step=self.step,
                task_path=task.path,
                attempt=attempt,
                error=f"{type(err).__name__}: {err}"[:2000],
                created_at=time.time(),
            )
        )

    async def _call(self, spec: NodeSpec, task: Task, ctx: NodeContext) -> Any:
        if spec.subgraph is not None:
            coro = self._call_subgraph(spec, task)
        else:
            if task.send:
                arg = task.payload
                if spec.payload_adapter is not None:
                    try:
                        arg = spec.payload_adapter.validate_python(task.payload)
                    except ValidationError as e:
                        raise UpdateRejected(
                            task.node,
                            None,
                            f"the Send payload does not fit its input annotation: {e}",
                        ) from None
                elif spec.input_kind == "state":
                    arg = self.schema.model.model_validate(task.payload)
            else:
                arg = input_for(spec.input_kind, spec.input_type, self.state)
            args = () if spec.input_kind == "none" else (arg,)
            kwargs = {spec.ctx_param: ctx} if spec.ctx_param else {}
            if spec.is_async:
                coro = spec.fn(*args, **kwargs)
            else:
                coro = asyncio.to_thread(spec.fn, *args, **kwargs)
        if spec.timeout is not None:
            return await asyncio.wait_for(coro, spec.timeout)
        return await coro

    async def _call_subgraph(self, spec: NodeSpec, task: Task) -> Any:
        sub = spec.subgraph
        child_id = f"{self.run_id}/{self.step}/{task.path}"
        bound = sub._bind(self.store)
        existing = self.store.find_run(child_id)
        source: BaseModel = self.state
        if task.send:
            # a Send to a subgraph carries the fields to override; the rest come from the
            # step's input state
            payload = task.payload if isinstance(task.payload, dict) else {}
            source = self.schema.model.model_validate({**self.state.model_dump(), **payload})
        child_input = {cf: getattr(source, pf) for cf, pf in (spec.input_map or {}).items()}
        if existing is None:
            result = await bound._start(
                child_input,
                run_id=child_id,
                parent=self.run_id,
                parent_step=self.step,
                emit=self.emit,
                journal=self.journal,
            )
        else:
            answers = self._load_answers(task)
            value = json.loads(answers[0]) if 0 in answers else None
            result = await bound._continue(
                child_id, value=value, emit=self.emit, journal=self.journal
            )
        if result.status != "completed":
            raise Interrupted(
                0,
                json.dumps(
                    {"subgraph": child_id, "status": result.status, "reason": result.reason}
                ),
            )
        update: dict[str, Any] = {}
        for pf, cf in (spec.output_map or {}).items():
            final = getattr(result.state, cf)
            reducer = self.schema.fields[pf].reducer
            kind = None
            if reducer is not None:
                kind = "append" if reducer.wrap_item else reducer.name
            update[pf] = _contribution(kind, child_input.get(cf, _MISSING), final)
        return update

    def _normalize(self, spec: NodeSpec, raw: Any) -> tuple[dict[str, Any], list[str | Send]]:
        goto: list[str | Send] = []
        if isinstance(raw, Command):
            g = raw.goto
            items = g if isinstance(g, list | tuple) else [g]
            for it in items:
                target = it.node if isinstance(it, Send) else it
                if target != END and target not in spec.goto:
                    raise UpdateRejected(
                        spec.name,
                        None,
                        f"its Command goes to '{target}', which was not declared: "
                        f"add_node('{spec.name}', ..., goto=[..., '{target}'])",
                    )
                goto.append(it)
            raw = raw.update
        if raw is None:
            upd: Mapping[str, Any] = {}
        elif isinstance(raw, BaseModel):
            upd = {k: getattr(raw, k) for k in raw.model_fields_set}
        elif isinstance(raw, Mapping):
            upd = raw
        else:
            raise UpdateRejected(
                spec.name,
                None,
                f"it returned {type(raw).__name__}; return a dict of state fields, a model, "
                "a Command, or None",
            )
        return self.schema.validate_update(spec.name, upd, spec.writes), goto
