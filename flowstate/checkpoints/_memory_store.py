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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, get_args

from flowstate.errors import LeaseLost, RunNotFound, RunOwned, RunStateError, StoreError

from ._records import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    WriteRecord,
)

__all__ = ["InMemoryStore"]

_MUTABLE_ORDER = ("status", "head_step", "error", "updated_at")
_MUTABLE = frozenset(_MUTABLE_ORDER)
_STATUSES = frozenset(get_args(RunStatus))
_ERROR_TYPES = frozenset({str, type(None)})
_now = time.time


def _check_mutable(fields: dict[str, Any]) -> None:
    if not _MUTABLE.issuperset(fields):
        unknown = set(fields) - _MUTABLE
        raise ValueError(
            f"run fields {sorted(unknown)} cannot change after creation; only "
            f"{', '.join(_MUTABLE_ORDER)} can"
        )


def _check_values(run_id: str, fields: dict[str, Any]) -> None:
    """The type checks the run record's strict validation would make (SQLite makes them
    when the row is read back; here they are made before anything is written)."""
    if "status" in fields and fields["status"] not in _STATUSES:
        raise ValueError(
            f"run {run_id}: status must be one of {sorted(_STATUSES)}, not {fields['status']!r}"
        )
    if "head_step" in fields and type(fields["head_step"]) is not int:
        raise ValueError(f"run {run_id}: head_step must be an int, not {fields['head_step']!r}")
    if "error" in fields and fields["error"] is not None and type(fields["error"]) is not str:
        raise ValueError(f"run {run_id}: error must be a string or None, not {fields['error']!r}")


def _duplicate_write(run_id: str, w: WriteRecord) -> StoreError:
    return StoreError(
        f"activation '{w.task_path}' of run {run_id} at step {w.step} is "
        "already committed (table 'writes'), so this commit of it was refused "
        "and nothing of it was stored. Only one process may execute a run at a "
        f"time: check `flowstate runs` for another worker running {run_id}"
    )


def _family(run_id: str) -> Callable[[str], bool]:
    """``rid == run_id`` or ``rid`` starts with ``run_id + "/"``: exact, case-sensitive,
    no wildcard (the same rows as SQLiteStore's byte range)."""
    prefix = run_id + "/"
    return lambda rid: rid == run_id or rid.startswith(prefix)


def _is_direct_child(prefix: str, rid: str) -> bool:
    step, sep, task = rid[len(prefix) :].partition("/")
    return bool(sep and task and "/" not in task and step.isascii() and step.isdigit())


def _utf8_len(s: str | None) -> int:
    return 0 if s is None else len(s.encode("utf-8", "surrogatepass"))


class _Run:
    """A run row: the record as created, its mutable columns and its lease."""

    __slots__ = (
        "base",
        "cached",
        "epoch",
        "error",
        "head_step",
        "lease_until",
        "owner",
        "status",
        "updated_at",
    )

    def __init__(self, rec: RunRecord) -> None:
        self.base = rec
        self.cached: RunRecord | None = rec
        self.status: str = rec.status
        self.head_step: int = rec.head_step
        self.error: str | None = rec.error
        self.updated_at: float = rec.updated_at
        self.owner: str | None = None
        self.epoch = 0
        self.lease_until: float | None = None

    def record(self) -> RunRecord:
        rec = self.cached
        if rec is None:
            rec = self.base.model_copy(
                update={
                    "status": self.status,
                    "head_step": self.head_step,
                    "error": self.error,
                    "updated_at": self.updated_at,
                }
            )
            self.cached = rec
        return rec


class _Tables:
    """The shared "database": per-run dicts of records keyed by their primary keys."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[str, _Run] = {}
        self.steps: dict[str, dict[int, StepRecord]] = {}
        self.writes: dict[str, dict[tuple[int, str], WriteRecord]] = {}
        self.effects: dict[str, dict[tuple[int, str, int], EffectRecord]] = {}
        self.interrupts: dict[str, dict[tuple[int, str, int], InterruptRecord]] = {}
        self.attempts: dict[str, dict[tuple[int, str, int], AttemptRecord]] = {}
        self.signals: dict[str, dict[str, float]] = {}

    def per_run(self) -> tuple[dict[str, Any], ...]:
        return (
            self.writes,
            self.steps,
            self.effects,
            self.interrupts,
            self.attempts,
            self.signals,
            self.runs,
        )


class InMemoryStore:
    """Checkpoint store in process memory, with ``SQLiteStore``'s interface and semantics.

    Records are immutable pydantic models, so they are kept as they are given and returned
    as they are stored. Thread-safe (one re-entrant lock, shared with ``sibling()`` stores).
    ``ctx.memory`` is not available on it (memories live in an SQLite database).
    """

    memory = True
    """Nothing is persisted (as ``SQLiteStore(":memory:").memory``)."""
    path = "memory://"

    def __init__(self, *, _tables: _Tables | None = None) -> None:
        self._t = _tables if _tables is not None else _Tables()
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
    def write(self) -> Iterator[_Tables]:
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
                raise RunStateError(
                    f"a run with id '{run.id}' already exists: resume it "
                    f"(`flowstate resume {run.id}`) or choose another run id"
                )
            steps = t.steps.get(first_step.run_id)
            if steps is not None and first_step.step in steps:
                raise StoreError(
                    f"step {first_step.step} of run {first_step.run_id} is already stored "
                    "(table 'steps'); nothing of this run was kept"
                )
            row = _Run(run)
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

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change a run's status, head step or error (the only mutable columns)."""
        with self._lock:
            row = self._checked_run(run_id, fields)
            self._apply_run_fields(row, fields)
            self.commits += 1
            return row.record()

    def _checked_run(self, run_id: str, fields: dict[str, Any]) -> _Run:
        """Validate an update of the run's mutable columns (SQLiteStore's order: the column
        names, the fence, the run's existence); returns the run's row."""
        _check_mutable(fields)
        if run_id in self.fences:
            self._fence(self._t, run_id)
        row = self._t.runs.get(run_id)
        if row is None:
            raise RunNotFound(run_id)
        _check_values(run_id, fields)
        return row

    @staticmethod
    def _apply_run_fields(row: _Run, fields: dict[str, Any]) -> None:
        if "status" in fields:
            row.status = fields["status"]
        if "head_step" in fields:
            row.head_step = fields["head_step"]
        if "error" in fields:
            row.error = fields["error"]
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
        hook: Any = None,
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
            _check_mutable(run_fields)
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
            m = key = w = None
            if len(writes) == 1:
                w = writes[0]
                key = (w.step, w.task_path)
                m = wt.get(w.run_id)
                if m is not None and key in m:
                    raise _duplicate_write(run_id, w)
            elif writes:
                seen: set[tuple[str, int, str]] = set()
                for x in writes:
                    k3 = (x.run_id, x.step, x.task_path)
                    xm = wt.get(x.run_id)
                    if k3 in seen or (xm is not None and k3[1:] in xm):
                        raise _duplicate_write(run_id, x)
                    seen.add(k3)
            if run_fields:
                if row is None:
                    raise RunNotFound(run_id)
                if (
                    run_fields.get("status", "running") not in _STATUSES
                    or type(run_fields.get("head_step", 0)) is not int
                    or type(run_fields.get("error")) not in _ERROR_TYPES
                ):
                    _check_values(run_id, run_fields)
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
        hi = stop if stop is not None else 2**62
        with self._lock:
            m = self._t.steps.get(run_id)
            if not m:
                return []
            return [m[k] for k in sorted(m) if start <= k < hi]

    def writes(self, run_id: str, start: int = 0, stop: int | None = None) -> list[WriteRecord]:
        hi = stop if stop is not None else 2**62
        with self._lock:
            m = self._t.writes.get(run_id)
            if not m:
                return []
            out = [w for w in m.values() if start <= w.step < hi]
        out.sort(key=lambda w: (w.step, w.seq, w.task_path))
        return out

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
            m = self._t.attempts.get(attempt.run_id)
            if m is None:
                m = self._t.attempts[attempt.run_id] = {}
            m[(attempt.step, attempt.task_path, attempt.attempt)] = attempt
            self.commits += 1

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        with self._lock:
            m = self._t.attempts.get(run_id)
            return [m[k] for k in sorted(m)] if m else []

    # -- maintenance -------------------------------------------------------------------------

    def integrity_check(self) -> str:
        """Always ``"ok"``: the records were validated when they were made and cannot
        change."""
        return "ok"

    def table_sizes(self) -> dict[str, int]:
        """Row count of every table."""
        t = self._t
        with self._lock:
            return {
                "attempts": sum(len(m) for m in t.attempts.values()),
                "effects": sum(len(m) for m in t.effects.values()),
                "interrupts": sum(len(m) for m in t.interrupts.values()),
                "runs": len(t.runs),
                "signals": sum(len(m) for m in t.signals.values()),
                "steps": sum(len(m) for m in t.steps.values()),
                "writes": sum(len(m) for m in t.writes.values()),
            }

    def largest_runs(self, limit: int = 10) -> list[tuple[str, int]]:
        """The ``limit`` runs with the most payload bytes (UTF-8), largest first, as
        ``(run id, bytes)``: their writes (update, goto, usage), steps (tasks, joins,
        snapshot) and effects (request, response). Child runs count on their own."""
        t = self._t
        totals: dict[str, int] = {}
        with self._lock:
            for rid, wm in t.writes.items():
                if wm:
                    totals[rid] = totals.get(rid, 0) + sum(
                        _utf8_len(w.update) + _utf8_len(w.goto) + _utf8_len(w.usage)
                        for w in wm.values()
                    )
            for rid, sm in t.steps.items():
                if sm:
                    totals[rid] = totals.get(rid, 0) + sum(
                        _utf8_len(s.tasks) + _utf8_len(s.joins) + _utf8_len(s.snapshot)
                        for s in sm.values()
                    )
            for rid, em in t.effects.items():
                if em:
                    totals[rid] = totals.get(rid, 0) + sum(
                        _utf8_len(e.request) + _utf8_len(e.response) for e in em.values()
                    )
        out = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
        n = int(limit)
        return out[:n] if n >= 0 else out

    def child_run_ids(self, run_id: str) -> list[str]:
        """Ids of the direct child runs of ``run_id``'s subgraph activations, i.e. the
        runs with id ``run_id/<step>/<task_path>``, in id order."""
        prefix = run_id + "/"
        with self._lock:
            ids = [rid for rid in self._t.runs if rid.startswith(prefix)]
        return sorted(rid for rid in ids if _is_direct_child(prefix, rid))

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything hanging off it, child runs included."""
        hit = _family(run_id)
        with self._lock:
            for table in self._t.per_run():
                for rid in [rid for rid in table if hit(rid)]:
                    del table[rid]
            self.commits += 1

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

    # -- one writer per run: leases and fencing --------------------------------------------

    def _fence(self, c: Any, run_id: str) -> None:
        """Raise ``LeaseLost`` unless this store object's (owner, epoch) for the run is
        still the run's. ``c`` (the tables yielded by ``write()``) is unused; the caller
        holds the lock."""
        fence = self.fences.get(run_id)
        if fence is None:
            return
        row = self._t.runs.get(run_id)
        if row is None or (row.owner, row.epoch) != fence:
            now_owner = f"now held by {row.owner} at epoch {row.epoch}" if row else "run deleted"
            raise LeaseLost(run_id, fence[1], now_owner)

    def acquire(self, run_id: str, owner: str, ttl: float, alive: Any = None) -> int:
        """Take the run's lease for ``owner`` (refused while another live owner holds an
        unexpired one) and return the new fencing epoch. ``alive(owner) -> bool|None`` lets
        the caller declare a holder dead before its lease expires (e.g. a dead local pid)."""
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is None:
                raise RunNotFound(run_id)
            holder, until = row.owner, row.lease_until
            now = time.time()
            if holder and holder != owner and until is not None and until > now:
                if alive is None or alive(holder) is not False:
                    raise RunOwned(run_id, holder, until)
            epoch = row.epoch + 1
            row.owner, row.epoch, row.lease_until = owner, epoch, now + ttl
            self.commits += 1
        self.fences[run_id] = (owner, epoch)
        return epoch

    def heartbeat(self, run_id: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when it was taken over (the caller must stop)."""
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is None or row.owner != owner or row.epoch != epoch:
                return False
            row.lease_until = time.time() + ttl
            self.commits += 1
            return True

    def release(self, run_id: str, owner: str, epoch: int) -> None:
        """Give the lease up (only if still held by this owner and epoch)."""
        self.fences.pop(run_id, None)
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is not None and row.owner == owner and row.epoch == epoch:
                row.owner = row.lease_until = None
            self.commits += 1

    def lease(self, run_id: str) -> tuple[str | None, int, float | None]:
        """(owner, epoch, lease_until) of a run."""
        with self._lock:
            row = self._t.runs.get(run_id)
            if row is None:
                raise RunNotFound(run_id)
            return (row.owner, row.epoch, row.lease_until)

    # -- state-schema migration of a stored run --------------------------------------------

    def migrate_run(
        self,
        run_id: str,
        *,
        state: Any,
        update: Any,
        fingerprint: str,
        graph_doc: str,
    ) -> None:
        """Rewrite a run's stored JSON to a new state-schema version, all at once:
        ``state(raw) -> raw`` for the input and every snapshot, ``update(raw) -> raw`` for
        every committed update; the run then records the new graph fingerprint. If any
        conversion raises, nothing changes."""
        t = self._t
        with self._lock:
            if run_id in self.fences:
                self._fence(t, run_id)
            row = t.runs.get(run_id)
            if row is None:
                raise RunNotFound(run_id)
            base = row.base.model_copy(
                update={
                    "input": state(row.base.input),
                    "fingerprint": fingerprint,
                    "graph_doc": graph_doc,
                }
            )
            new_steps = {
                k: s if s.snapshot is None else s.model_copy(update={"snapshot": state(s.snapshot)})
                for k, s in (t.steps.get(run_id) or {}).items()
            }
            new_writes = {
                k: w.model_copy(update={"update": update(w.update)})
                for k, w in (t.writes.get(run_id) or {}).items()
            }
            row.base, row.cached = base, None
            if run_id in t.steps:
                t.steps[run_id] = new_steps
            if run_id in t.writes:
                t.writes[run_id] = new_writes
            self.commits += 1
