"""The in-memory checkpoint store: the "no persistence" mode, for tests and benchmarks.

``InMemoryStore`` has the public interface and the semantics of ``SQLiteStore`` (the same
records, orderings, filters, exceptions, all-or-nothing commits, leases and fencing) but
keeps the immutable pydantic records themselves in plain dicts: no SQL, no JSON, no row
hashes. Every write operation validates everything first and then applies, so a failing
operation leaves nothing behind without needing a rollback. Nothing survives the process.

Several store objects may share one set of tables (``sibling()``): they stand for several
processes on one database, each with its own fences, serialised by one lock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flowstate.clock import get_clock
from flowstate.errors import RunNotFound, RunStateError, StoreError

from ._common import (
    MUTABLE,
    NO_STOP,
    check_mutable,
    duplicate_write_error,
    run_exists_error,
    sum_usage,
    superseded_text,
    turn_taken_error,
)
from ._memory_events import MemoryEvents
from ._memory_leases import MemoryLeases
from ._memory_maint import MemoryMaintenance
from ._memory_tables import STATUSES, Run, Tables, check_values
from ._memory_timers import MemoryTimers
from ._records import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    StepRecord,
    ThreadRecord,
    WriteRecord,
)

__all__ = ["InMemoryStore"]

_MUTABLE = frozenset(MUTABLE)
_ERROR_TYPES = frozenset({str, type(None)})


def _now() -> float:
    return get_clock().now()


class InMemoryStore(MemoryLeases, MemoryTimers, MemoryMaintenance, MemoryEvents):
    """Checkpoint store in process memory, with ``SQLiteStore``'s interface and semantics.

    Records are immutable pydantic models, so they are kept as they are given and returned
    as they are stored. Thread-safe (one re-entrant lock, shared with ``sibling()`` stores).
    ``ctx.memory`` is not available on it (memories live in an SQLite database).
    """

    memory = True
    """Nothing is persisted (as ``SQLiteStore(":memory:").memory``)."""
    path = "memory://"

    def __init__(self, *, _tables: Tables | None = None) -> None:
        self._t = _tables if _tables is not None else Tables()
        self._lock = self._t.lock
        self.fences: dict[str, tuple[str, int]] = {}
        """run id -> (owner, epoch) this store object writes for; every write touching a
        fenced run checks, under the lock, that the epoch is still current."""
        self.commits = 0
        """Number of write operations committed by this store object (for tests)."""
        self.closed = False

    def sibling(self) -> InMemoryStore:
        """Another store object on the same tables, with its own fences: a second process
        on the same database (for lease and takeover tests)."""
        return InMemoryStore(_tables=self._t)

    def __repr__(self) -> str:
        return f"InMemoryStore({len(self._t.runs)} runs)"

    # -- transactions -------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Tables]:
        """Hold the store's lock for a block of writes (no rollback: each operation of
        this store validates before it changes anything)."""
        with self._lock:
            yield self._t
            self.commits += 1

    def close(self) -> None:
        """Nothing to release; the tables stay readable by ``sibling()`` stores."""
        self.closed = True

    # -- runs -----------------------------------------------------------------------------

    def create_run(
        self,
        run: RunRecord,
        first_step: StepRecord,
        *,
        owner: str | None = None,
        ttl: float = 0.0,
    ) -> None:
        """Create a run and its first step; with ``owner``, also take its lease (epoch 1)."""
        t = self._t
        with self._lock:
            if run.id in t.runs:
                raise turn_taken_error(run) if run.thread_id else run_exists_error(run.id)
            if run.thread_id is not None and any(
                r.base.thread_id == run.thread_id and r.base.turn == run.turn
                for r in t.runs.values()
            ):
                raise turn_taken_error(run)  # SQL stores: the unique index of m301
            steps = t.steps.get(first_step.run_id)
            if steps is not None and first_step.step in steps:
                raise StoreError(
                    f"step {first_step.step} of run {first_step.run_id} is already stored "
                    "(table 'steps'); nothing of this run was kept"
                )
            row = Run(run)
            if owner is not None:
                row.owner, row.epoch, row.lease_until = owner, 1, time.time() + ttl
            t.runs[run.id] = row
            if steps is None:
                t.steps[first_step.run_id] = {first_step.step: first_step}
            else:
                steps[first_step.step] = first_step
            self.commits += 1
        if owner is not None:
            self.fences[run.id] = (owner, 1)

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is None:
                raise RunNotFound(run_id)
            return row.record()

    def find_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._t.runs.get(run_id)
            return None if row is None else row.record()

    def list_runs(
        self,
        *,
        status: str | None = None,
        graph: str | None = None,
        parent_id: str | None = None,
        include_children: bool = False,
        limit: int = 100,
        before: float | None = None,
    ) -> list[RunRecord]:
        with self._lock:
            rows = [
                r
                for rid, r in self._t.runs.items()
                if (status is None or r.status == status)
                and (graph is None or r.base.graph == graph)
                and (parent_id is None or r.base.parent_id == parent_id)
                and (include_children or "/" not in rid)
                and (before is None or r.base.created_at < before)
            ]
            rows.sort(key=lambda r: r.base.id)
            rows.sort(key=lambda r: r.base.created_at, reverse=True)
            n = int(limit)
            if n >= 0:  # SQLite: a negative LIMIT means no limit
                rows = rows[:n]
            return [r.record() for r in rows]

    def thread_runs(self, thread_id: str) -> list[RunRecord]:
        with self._lock:
            rows = [r for r in self._t.runs.values() if r.base.thread_id == thread_id]
            rows.sort(key=lambda r: r.base.turn or 0)
            return [r.record() for r in rows]

    def threads(self, limit: int = 100, before: float | None = None) -> list[ThreadRecord]:
        with self._lock:
            found: dict[str, list[float]] = {}
            for r in self._t.runs.values():
                if r.base.thread_id is not None:
                    found.setdefault(r.base.thread_id, []).append(r.base.created_at)
        out = [
            ThreadRecord(thread_id=k, turns=len(v), created_at=min(v), last_at=max(v))
            for k, v in found.items()
            if before is None or max(v) < before
        ]
        out.sort(key=lambda t: t.thread_id)
        out.sort(key=lambda t: t.last_at, reverse=True)
        return out[: max(0, int(limit))]

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change a run's status, head step or error (the only mutable columns)."""
        with self._lock:
            row = self._checked_run(run_id, fields)
            self._apply_run_fields(row, fields)
            self.commits += 1
            return row.record()

    def _checked_run(self, run_id: str, fields: dict[str, Any]) -> Run:
        """Validate an update of the run's mutable columns (SQLiteStore's order: the column
        names, the fence, the run's existence); returns the run's row."""
        check_mutable(fields)
        if run_id in self.fences:
            self._fence(self._t, run_id)
        row = self._t.runs.get(run_id)
        if row is None:
            raise RunNotFound(run_id)
        check_values(run_id, fields)
        return row

    @staticmethod
    def _apply_run_fields(row: Run, fields: dict[str, Any]) -> None:
        if "status" in fields:
            row.status = fields["status"]
        if "head_step" in fields:
            row.head_step = fields["head_step"]
        if "error" in fields:
            row.error = fields["error"]
        wake = fields.get("wake_at")
        if fields.get("status") == "paused" and wake is not None:
            row.wake_at = float(wake) if row.wake_at is None else min(row.wake_at, float(wake))
        elif "status" in fields and fields["status"] != "paused":
            row.wake_at = None
        row.updated_at = _now()  # always the time of the update, as in SQLiteStore
        row.cached = None

    # -- steps and writes -----------------------------------------------------------------

    def commit(
        self,
        run_id: str,
        *,
        writes: Sequence[WriteRecord] = (),
        effects: Sequence[EffectRecord] = (),
        step: StepRecord | None = None,
        run_fields: dict[str, Any] | None = None,
        hook: Callable[[Any], None] | None = None,
    ) -> None:
        """Commit an activation (or a step boundary) all at once (G1): everything is
        checked first, then the write rows, the effects (first write of a key wins), the
        step row (replaced if present) and the run's mutable columns are stored."""
        if hook is not None:
            raise RunStateError(
                "InMemoryStore.commit takes no hook: commit hooks apply memory writes "
                "(ctx.memory) inside an SQLite transaction, and memories need the SQLite "
                "checkpoint store; compile(store=':memory:') or a file path for that graph"
            )
        if run_fields and not _MUTABLE.issuperset(run_fields):
            check_mutable(run_fields)
        t = self._t
        with self._lock:
            fence = self.fences.get(run_id)
            row = t.runs.get(run_id) if fence is not None or run_fields else None
            if fence is not None and (
                row is None or row.owner != fence[0] or row.epoch != fence[1]
            ):
                self._fence(t, run_id)  # raises LeaseLost
            # -- validate everything --
            wt = t.writes
            m: dict[tuple[int, str], WriteRecord] | None = None
            key: tuple[int, str] = (0, "")
            w: WriteRecord | None = None
            if len(writes) == 1:
                w = writes[0]
                key = (w.step, w.task_path)
                m = wt.get(w.run_id)
                if m is not None and key in m:
                    raise duplicate_write_error(run_id, w)
            elif writes:
                seen: set[tuple[str, int, str]] = set()
                for x in writes:
                    k3 = (x.run_id, x.step, x.task_path)
                    xm = wt.get(x.run_id)
                    if k3 in seen or (xm is not None and k3[1:] in xm):
                        raise duplicate_write_error(run_id, x)
                    seen.add(k3)
            if run_fields:
                if row is None:
                    raise RunNotFound(run_id)
                if (
                    run_fields.get("status", "running") not in STATUSES
                    or type(run_fields.get("head_step", 0)) is not int
                    or type(run_fields.get("error")) not in _ERROR_TYPES
                ):
                    check_values(run_id, run_fields)
            # -- apply --
            if w is not None:
                if m is None:
                    wt[w.run_id] = {key: w}
                else:
                    m[key] = w
            elif writes:
                for x in writes:
                    xm = wt.get(x.run_id)
                    if xm is None:
                        wt[x.run_id] = {(x.step, x.task_path): x}
                    else:
                        xm[(x.step, x.task_path)] = x
            if effects:
                et = t.effects
                for e in effects:
                    em = et.get(e.run_id)
                    if em is None:
                        em = et[e.run_id] = {}
                    em.setdefault((e.step, e.task_path, e.seq), e)
            if step is not None:
                sm = t.steps.get(step.run_id)
                if sm is None:
                    t.steps[step.run_id] = {step.step: step}
                else:
                    sm[step.step] = step
            if run_fields:
                if "status" in run_fields:
                    row.status = run_fields["status"]  # type: ignore[union-attr]
                    if row.status != "paused":  # type: ignore[union-attr]
                        row.wake_at = None  # type: ignore[union-attr]
                if "head_step" in run_fields:
                    row.head_step = run_fields["head_step"]  # type: ignore[union-attr]
                if "error" in run_fields:
                    row.error = run_fields["error"]  # type: ignore[union-attr]
                row.updated_at = _now()  # type: ignore[union-attr]
                row.cached = None  # type: ignore[union-attr]
            self.commits += 1

    def get_step(self, run_id: str, step: int) -> StepRecord | None:
        with self._lock:
            m = self._t.steps.get(run_id)
            return None if m is None else m.get(step)

    def latest_step(self, run_id: str) -> StepRecord | None:
        with self._lock:
            m = self._t.steps.get(run_id)
            return m[max(m)] if m else None

    def last_snapshot(self, run_id: str, at_or_before: int) -> StepRecord | None:
        with self._lock:
            m = self._t.steps.get(run_id)
            if not m:
                return None
            best = [k for k, s in m.items() if k <= at_or_before and s.snapshot is not None]
            return m[max(best)] if best else None

    def steps(self, run_id: str, start: int = 0, stop: int | None = None) -> list[StepRecord]:
        hi = stop if stop is not None else NO_STOP
        with self._lock:
            m = self._t.steps.get(run_id)
            if not m:
                return []
            return [m[k] for k in sorted(m) if start <= k < hi]

    def writes(self, run_id: str, start: int = 0, stop: int | None = None) -> list[WriteRecord]:
        hi = stop if stop is not None else NO_STOP
        with self._lock:
            m = self._t.writes.get(run_id)
            if not m:
                return []
            out = [w for w in m.values() if start <= w.step < hi]
        out.sort(key=lambda w: (w.step, w.seq, w.task_path))
        return out

    def supersede_writes(self, run_id: str, step: int) -> int:
        """Move the step's write rows to ``attempts`` (see the protocol)."""
        with self._lock:
            self._fence(self._t, run_id)
            m = self._t.writes.get(run_id) or {}
            gone = sorted(
                (w for k, w in m.items() if k[0] == step and w.seq >= 0), key=lambda w: w.seq
            )
            if not gone:
                return 0
            am = self._t.attempts.setdefault(run_id, {})
            n = min(-1, min((k[2] for k in am if k[0] == step), default=0) - 1)
            now = time.time()
            for w in gone:
                del m[(step, w.task_path)]
                am[(step, w.task_path, n)] = AttemptRecord(
                    run_id=run_id,
                    step=step,
                    task_path=w.task_path,
                    attempt=n,
                    error=superseded_text(w),
                    created_at=now,
                )
            self.commits += 1
            return len(gone)

    # -- effects, interrupts, attempts ------------------------------------------------------

    def record_effect(self, effect: EffectRecord, *, replace: bool = False) -> None:
        with self._lock:
            if effect.run_id in self.fences:
                self._fence(self._t, effect.run_id)
            m = self._t.effects.get(effect.run_id)
            if m is None:
                m = self._t.effects[effect.run_id] = {}
            key = (effect.step, effect.task_path, effect.seq)
            if replace:
                m[key] = effect
            else:
                m.setdefault(key, effect)
            self.commits += 1

    def effects(
        self, run_id: str, step: int | None = None, task_path: str | None = None
    ) -> list[EffectRecord]:
        with self._lock:
            m = self._t.effects.get(run_id)
            if not m:
                return []
            keys = sorted(
                k
                for k in m
                if (step is None or k[0] == step) and (task_path is None or k[1] == task_path)
            )
            return [m[k] for k in keys]

    def record_interrupt(self, intr: InterruptRecord, run_fields: dict[str, Any]) -> None:
        with self._lock:
            if intr.run_id in self.fences:
                self._fence(self._t, intr.run_id)
            row = self._checked_run(intr.run_id, run_fields)
            m = self._t.interrupts.get(intr.run_id)
            if m is None:
                m = self._t.interrupts[intr.run_id] = {}
            m[(intr.step, intr.task_path, intr.seq)] = intr
            self._apply_run_fields(row, run_fields)
            self.commits += 1

    def interrupts(self, run_id: str, step: int | None = None) -> list[InterruptRecord]:
        with self._lock:
            m = self._t.interrupts.get(run_id)
            if not m:
                return []
            return [m[k] for k in sorted(m) if step is None or k[0] == step]

    def answer_interrupt(self, intr: InterruptRecord, answer: str) -> None:
        new = intr.model_copy(update={"answer": answer})
        with self._lock:
            m = self._t.interrupts.get(intr.run_id)
            if m is None:
                m = self._t.interrupts[intr.run_id] = {}
            m[(intr.step, intr.task_path, intr.seq)] = new
            self.commits += 1

    def record_attempt(self, attempt: AttemptRecord) -> None:
        with self._lock:
            self._fence(self._t, attempt.run_id)  # a former owner stores nothing
            m = self._t.attempts.get(attempt.run_id)
            if m is None:
                m = self._t.attempts[attempt.run_id] = {}
            m[(attempt.step, attempt.task_path, attempt.attempt)] = attempt
            self.commits += 1

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        with self._lock:
            m = self._t.attempts.get(run_id)
            return [m[k] for k in sorted(m)] if m else []

    # -- signals: pause and cancel requests ------------------------------------------------

    def send_signal(self, run_id: str, kind: str) -> None:
        with self._lock:
            m = self._t.signals.get(run_id)
            if m is None:
                m = self._t.signals[run_id] = {}
            m[kind] = time.time()
            self.commits += 1

    def signals(self, run_id: str) -> set[str]:
        with self._lock:
            m = self._t.signals.get(run_id)
            return set(m) if m else set()

    def clear_signals(self, run_id: str) -> None:
        with self._lock:
            self._t.signals.pop(run_id, None)
            self.commits += 1

    def visit_counts(self, run_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            m = self._t.writes.get(run_id)
            for w in (m or {}).values():
                counts[w.node] = counts.get(w.node, 0) + 1
        return dict(sorted(counts.items()))

    def usage_totals(self, run_id: str) -> tuple[int, dict[str, int]]:
        """(committed activations, summed token usage) of the run."""
        with self._lock:
            rows = list((self._t.writes.get(run_id) or {}).values())
        return len(rows), sum_usage(w.usage for w in rows)
