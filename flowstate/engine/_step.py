"""One bulk-synchronous step and its bookkeeping, owned in one place.

Every activation of a step reads the step's input state. Each finished activation is
committed at once, before anything that depends on it goes on (why not one transaction
per step: a crash then loses only the activations that were still running, never the
finished ones); activations that finish in the same turn of the event loop — of this run
or of other runs on the store — may share that transaction (``_group.py``). The step
alone decides when it closes: the commit of its last outstanding activation, when nothing
failed or paused, also carries the merge of all updates (in task order) and the next
step's row, so the step boundary costs no extra transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from flowstate import events as ev
from flowstate.checkpoints import StepRecord, WriteRecord
from flowstate.errors import PayloadTooLarge

from ._context import Interrupted
from ._outcome import Committed, Failure, Ready, goto_to_json
from ._plan import plan_next, tasks_json
from ._point import Progress
from ._rows import parse
from ._scope import RunScope
from ._types import Task

__all__ = ["SNAPSHOT_MAX_STEPS", "SNAPSHOT_MIN_BYTES", "SNAPSHOT_SMALL_BYTES", "Closed", "Step"]

SNAPSHOT_MIN_BYTES = 1 << 20
"""Never snapshot before this many update bytes have accumulated: replaying up to 1 MiB
of JSON updates costs a few milliseconds, and storage must grow with the change."""
SNAPSHOT_MAX_STEPS = 1000
"""…but snapshot at least every this many steps, to bound rebuild work for long runs."""
SNAPSHOT_SMALL_BYTES = 512
"""…and at every step while the state is known to be at most this many bytes (the
``max_state_bytes`` bound, no serialisation to know it): a snapshot that small costs
less to store than the step row around it, and ``state_at`` any step then reads one
snapshot instead of replaying updates (bench W5)."""


@dataclass
class Closed:
    """A closed step: the merged state and what the next step runs."""

    state: BaseModel
    tasks: list[Task]
    joins: dict[str, list[str]]


@dataclass
class _Closing:
    """A close computed but not yet committed."""

    closed: Closed
    row: StepRecord
    run_fields: dict[str, Any]
    snapshot_bytes: int | None
    """Size of the snapshot the next step row holds, None when it holds none."""
    measured: tuple[int, int]
    """The state-size bound after this close: (size when last measured, update bytes
    merged since), see ``Progress.measured_bytes``."""


class Step:
    """One step of a run: its input state and tasks, the activations committed so far,
    the failures and interrupts of its activations, and when it closes."""

    def __init__(
        self,
        scope: RunScope,
        number: int,
        state: BaseModel,
        tasks: list[Task],
        joins: dict[str, list[str]],
        committed: dict[str, Committed],
        progress: Progress,
    ) -> None:
        self.scope = scope
        self.number = number
        """The step's number (0 is the first)."""
        self.state = state
        """The input state every activation of the step reads."""
        self.tasks = tasks
        """The activations the step runs, in merge order."""
        self.joins = joins
        """Join targets waiting for more sources: target -> sources already seen."""
        self.committed = committed
        """Committed activations by task path (some may predate a resume)."""
        self.progress = progress
        """The run's counters; this step advances them with each commit."""
        self.failures: list[Failure] = []
        self.interrupts: list[tuple[Task, Interrupted]] = []
        self.closed: Closed | None = None
        """Set once the step's close is committed."""
        self.close_error: Exception | None = None
        """Why the step could not close after its last commit (a write conflict, a
        router error): the run fails with it."""
        self._outstanding = 0
        self._seq = {t.path: i for i, t in enumerate(tasks)}

    @classmethod
    def from_row(
        cls,
        scope: RunScope,
        row: StepRecord,
        state: BaseModel,
        committed: dict[str, Committed],
        progress: Progress,
    ) -> Step:
        """The step stored as ``row``, with the activations already committed in it."""
        rid = scope.run_id
        tasks = [Task.from_json(t) for t in parse("tasks", row.tasks, "steps", rid, row.step)]
        joins: dict[str, list[str]] = parse("joins", row.joins, "steps", rid, row.step)
        return cls(scope, row.step, state, tasks, joins, committed, progress)

    def pending(self) -> list[Task]:
        """The tasks not committed yet."""
        return [t for t in self.tasks if t.path not in self.committed]

    def begin(self, pending: list[Task]) -> None:
        """The activations of ``pending`` are about to run."""
        self._outstanding = len(pending)
        self.failures = []
        self.interrupts = []
        self.close_error = None

    @property
    def stopped(self) -> bool:
        """An activation failed or paused, or the close failed: the run stops here."""
        return bool(self.failures or self.interrupts or self.close_error)

    # -- settling activations ----------------------------------------------------------

    async def settle(self, outcome: Ready | Failure | Interrupted, task: Task) -> Any:
        """Record how the activation of ``task`` ended; a ``Ready`` one is committed (and
        closes the step when it is the last one). Returns the committed activation, the
        failure or the interrupt."""
        self._outstanding -= 1
        if isinstance(outcome, Failure):
            self.failures.append(outcome)
            return outcome
        if isinstance(outcome, Interrupted):
            self.interrupts.append((task, outcome))
            return outcome
        return await self._commit(outcome)

    async def _commit(self, r: Ready) -> Committed:
        scope, task = self.scope, r.task
        write = WriteRecord(
            run_id=scope.run_id,
            step=self.number,
            task_path=task.path,
            node=task.node,
            seq=self._seq[task.path] if len(self.tasks) > 1 else 0,
            update=r.raw,
            goto=goto_to_json(r.goto) if r.goto else "[]",
            usage=json.dumps(r.usage) if r.usage else "{}",
            started_at=r.started,
            finished_at=time.time(),
        )
        if scope.journal is not None and scope.journal.check is not None:
            scope.journal.check(scope.run_id, write, r.update)
        c = Committed(task, write, r.update, r.goto)
        self.committed[task.path] = c
        closing: _Closing | None = None
        if self._outstanding == 0 and not self.stopped:
            try:
                closing = self._close_plan()
            except Exception as e:  # a write conflict or a router error: fail after commit
                self.close_error = e
        step_row = closing.row if closing else None
        run_fields = closing.run_fields if closing else None
        try:
            hook: Callable[[Any], None] | None = None
            if r.memory_ops:
                ops = list(r.memory_ops)
                apply = scope.memory().reader.apply_ops

                def apply_ops(conn: Any) -> None:
                    apply(conn, ops)

                hook = apply_ops

            group = scope.group
            if group is not None and (group.active > 1 or len(self.tasks) > 1):
                # other activations may finish in this turn: share their transaction
                await group.commit(scope.run_id, [write], step_row, run_fields, hook)
            elif hook is not None:
                scope.store.commit(
                    scope.run_id, writes=[write], step=step_row, run_fields=run_fields, hook=hook
                )
            else:  # no hook argument: a store need not take one when memories are unused
                scope.store.commit(
                    scope.run_id, writes=[write], step=step_row, run_fields=run_fields
                )
        except BaseException:
            self.committed.pop(task.path, None)
            raise
        p = self.progress
        if closing is not None:
            self._closed(closing)
        p.activations += 1
        p.visits[task.node] = p.visits.get(task.node, 0) + 1
        p.tokens_in += r.usage.get("input_tokens", 0)
        p.tokens_out += r.usage.get("output_tokens", 0)
        if r.usage:
            p.cost_usd += scope.config.limits.cost_of(r.usage)
        p.bytes_since_snapshot += len(r.raw)
        if scope.listening:
            scope.emit(
                ev.NodeFinished(
                    run_id=scope.run_id,
                    step=self.number,
                    node=task.node,
                    task_path=task.path,
                    update=json.loads(r.raw),
                    duration_ms=(write.finished_at - r.started) * 1000,
                    usage=dict(r.usage),
                )
            )
        elif scope.log is not None:
            scope.log.node_finished(
                self.number,
                task.node,
                task.path,
                r.raw,
                (write.finished_at - r.started) * 1000,
                dict(r.usage),
            )
        return c

    # -- closing -----------------------------------------------------------------------

    def close(self) -> Closed | None:
        """Close a step whose activations are all committed already (after a resume, or
        a step without tasks to run) in a transaction of its own. None when the merge or
        the routing failed (``close_error`` says why; nothing was written): the run
        fails with ``StepCloseFailed`` and a resume re-attempts the close."""
        if self.closed is None:
            try:
                closing = self._close_plan()
            except Exception as e:  # a write conflict, a reducer, a router, a limit
                self.close_error = e
                return None
            self.scope.store.commit(
                self.scope.run_id, step=closing.row, run_fields=closing.run_fields
            )
            self._closed(closing)
        assert self.closed is not None
        return self.closed

    def _closed(self, closing: _Closing) -> None:
        p = self.progress
        p.measured_bytes, p.bytes_since_measured = closing.measured
        if closing.snapshot_bytes is None:
            p.steps_since_snapshot += 1
        else:
            p.last_snapshot_bytes = closing.snapshot_bytes
            p.bytes_since_snapshot = 0
            p.steps_since_snapshot = 0
        self.closed = closing.closed

    def _close_plan(self) -> _Closing:
        """Merge the committed updates in task order and plan the next step."""
        scope, p = self.scope, self.progress
        ordered = [self.committed[t.path] for t in self.tasks]
        merged = scope.schema.apply(
            self.state, [(c.task.node, c.update) for c in ordered], self.number
        )
        next_tasks, joins = plan_next(
            scope.ir, merged, [(c.task, c.goto) for c in ordered], self.joins
        )
        measured = self._check_state_bytes(merged, ordered)
        snapshot: str | None = None
        if measured[0] + measured[1] <= SNAPSHOT_SMALL_BYTES or (
            next_tasks
            and (
                p.bytes_since_snapshot >= max(SNAPSHOT_MIN_BYTES, 2 * p.last_snapshot_bytes)
                or p.steps_since_snapshot + 1 >= SNAPSHOT_MAX_STEPS
            )
        ):
            snapshot = scope.schema.dump_state(merged)
            limit = scope.config.limits.max_state_bytes
            if len(snapshot) > limit:
                raise PayloadTooLarge(
                    f"the state after step {self.number}", len(snapshot), limit, "max_state_bytes"
                )
            measured = (len(snapshot), 0)
        row = StepRecord(
            run_id=scope.run_id,
            step=self.number + 1,
            tasks=tasks_json(next_tasks),
            joins=json.dumps(joins) if joins else "{}",
            snapshot=snapshot,
            created_at=time.time(),
        )
        run_fields: dict[str, Any] = {
            "head_step": self.number + 1,
            "status": "running" if next_tasks else "completed",
            "error": None,
        }
        return _Closing(
            Closed(merged, next_tasks, joins),
            row,
            run_fields,
            None if snapshot is None else len(snapshot),
            measured,
        )

    def _check_state_bytes(self, merged: BaseModel, ordered: list[Committed]) -> tuple[int, int]:
        """``max_state_bytes`` on every step close, cheaply: the state's JSON is at most
        the last measured size plus every update's JSON since (replacing a field, or the
        built-in reducers, never grow it by more than the update). Only when that bound
        passes the limit is the state serialised and measured; a measure that passes
        becomes the new base. Returns the bound's new (base, bytes since)."""
        p, scope = self.progress, self.scope
        limit = scope.config.limits.max_state_bytes
        since = p.bytes_since_measured + sum(len(c.write.update) for c in ordered)
        if p.measured_bytes + since <= limit:
            return (p.measured_bytes, since)
        size = len(scope.schema.dump_state(merged))
        if size > limit:
            raise PayloadTooLarge(
                f"the state after step {self.number}", size, limit, "max_state_bytes"
            )
        return (size, 0)
