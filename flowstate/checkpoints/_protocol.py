"""The checkpoint-store contract: what the engine, the service and the CLI may ask of a store.

``CheckpointStore`` is the interface; ``SQLiteStore`` (the embedded default),
``PostgresStore`` (several workers on several machines) and ``InMemoryStore`` (no
persistence) implement it, and ``tests/store/test_contract.py`` is its executable
specification: every test there runs against every backend. A store of your own is
correct when it passes that suite.

``LeaseStore`` is a capability on top of it: one writer per run, with fencing epochs.
Every built-in store has it; the engine takes a lease only when ``isinstance(store,
LeaseStore)`` (a store without leases runs each run in one process, unfenced).

Rules every implementation follows (the contract suite checks each one):

- Records are the pydantic models of ``flowstate.checkpoints`` (``RunRecord``, ...), and
  their JSON columns are stored as the exact text given: a store never re-serialises a
  document, never pickles, imports or evaluates anything in a row. A row that fails its
  integrity check or its model on the way back is a ``CorruptRowError`` naming table, run
  and step.
- Every write operation is one transaction: all of it or nothing of it (``commit`` in
  particular, RELIABILITY.md G1). A failed write leaves nothing behind.
- Errors are ``flowstate.errors``: ``RunNotFound`` for an unknown run id, ``StoreError``
  for a refused write, ``StoreIOError`` for the database failing, ``LeaseLost`` when a
  fenced write finds that another owner took the run over.
- Reads return rows in the documented order, the same on every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._records import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    StepRecord,
    ThreadRecord,
    WriteRecord,
)

__all__ = ["CheckpointStore", "CommitEntry", "GroupCommitStore", "LeaseStore", "OwnerAlive"]

_CHECKED: dict[tuple[type, type], bool] = {}


class _StoreProtocolMeta(type(Protocol)):
    """``isinstance(store, LeaseStore)`` answered once per store class: Python 3.11's
    runtime protocol check walks every member of these large protocols on each call
    (~0.1 ms, several per run — bench W10). A class with ``__getattr__`` (a proxy whose
    members depend on what it wraps) is checked every time, as before."""

    def __instancecheck__(cls, obj: object) -> bool:
        kind = type(obj)
        if cls.__dict__.get("_is_protocol") is not True or hasattr(kind, "__getattr__"):
            return super().__instancecheck__(obj)
        key = (cls, kind)
        hit = _CHECKED.get(key)
        if hit is None:
            hit = _CHECKED[key] = super().__instancecheck__(obj)
        return hit


OwnerAlive = Callable[[str], "bool | None"]
"""``alive(owner)``: False when the holder of a lease is known to be dead (a pid on this
host that no longer exists), None when this cannot be told (then only expiry frees it)."""


@runtime_checkable
class CheckpointStore(Protocol, metaclass=_StoreProtocolMeta):
    """A durable home for runs: run rows, step boundaries, committed activations (writes),
    the effects journal, interrupts, failed attempts and cross-process signals."""

    # -- runs -----------------------------------------------------------------------------

    def create_run(
        self,
        run: RunRecord,
        first_step: StepRecord,
        *,
        owner: str | None = None,
        ttl: float = 0.0,
    ) -> None:
        """Store a new run and its step-0 row in one transaction. An existing id is a
        ``RunStateError`` naming it. With ``owner`` (a ``LeaseStore`` only), the run is
        created holding its lease at epoch 1 for ``ttl`` seconds."""
        ...

    def get_run(self, run_id: str) -> RunRecord:
        """The run row; ``RunNotFound`` when there is none."""
        ...

    def find_run(self, run_id: str) -> RunRecord | None:
        """The run row, or None."""
        ...

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
        """Runs matching every filter given, newest first (``created_at`` descending, then
        ``id``), at most ``limit``. Subgraph child runs (an id with ``/``) only with
        ``include_children``; ``before`` keeps runs created strictly earlier."""
        ...

    def thread_runs(self, thread_id: str) -> list[RunRecord]:
        """The runs on thread ``thread_id`` (its turns, queued ones included), by turn;
        empty when there is no such thread."""
        ...

    def threads(self, limit: int = 100, before: float | None = None) -> list[ThreadRecord]:
        """Threads by their latest turn's ``created_at``, newest first (then id), at most
        ``limit``; ``before`` keeps threads whose latest turn was created strictly
        earlier."""
        ...

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change the mutable columns (``status``, ``head_step``, ``error``; ``updated_at``
        is set to now) and return the new row. Any other column is a ``ValueError``; a
        fenced run whose lease was taken over raises ``LeaseLost``."""
        ...

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
        """Commit one activation (or a step boundary) in one transaction: its write rows,
        the effects journaled with it (first record of a key wins), the next step row
        (replacing one of the same step) and the run's mutable fields. A write whose
        ``(run, step, task_path)`` is already stored is a ``StoreError`` and nothing is
        kept. ``hook(connection)`` runs inside the same transaction (the engine applies a
        node's memory writes there); a store that cannot run it raises ``RunStateError``."""
        ...

    def supersede_writes(self, run_id: str, step: int) -> int:
        """Take the write rows of ``step`` out of the run, in one (fenced) transaction,
        keeping each as an ``attempts`` row: a negative attempt number (-1 for the first
        re-run of the step, -2 for the next, …) and the write as JSON in ``error``
        (``superseded by resume(rerun_step=True): {...}``). Returns how many were
        superseded. Used by ``resume(run_id, rerun_step=True)``. Rows with a negative
        ``seq`` are not activations but edits of the step's input (``update_state``):
        they stay."""
        ...

    def get_step(self, run_id: str, step: int) -> StepRecord | None:
        """The step row ``step`` of the run, or None."""
        ...

    def latest_step(self, run_id: str) -> StepRecord | None:
        """The run's highest step row (where it resumes), or None."""
        ...

    def last_snapshot(self, run_id: str, at_or_before: int) -> StepRecord | None:
        """The highest step row at or before ``at_or_before`` that holds a state snapshot."""
        ...

    def steps(self, run_id: str, start: int = 0, stop: int | None = None) -> list[StepRecord]:
        """Step rows with ``start <= step < stop`` (no upper bound when None), by step."""
        ...

    def writes(self, run_id: str, start: int = 0, stop: int | None = None) -> list[WriteRecord]:
        """Committed activations with ``start <= step < stop``, by step then ``seq``."""
        ...

    # -- effects, interrupts, attempts ----------------------------------------------------

    def record_effect(self, effect: EffectRecord, *, replace: bool = False) -> None:
        """Journal one effect. The first record of ``(run, step, task_path, seq)`` wins;
        ``replace`` overwrites it (a resumed activation whose request changed)."""
        ...

    def effects(
        self, run_id: str, step: int | None = None, task_path: str | None = None
    ) -> list[EffectRecord]:
        """Journaled effects, optionally of one step and one task, by step, task, seq."""
        ...

    def record_interrupt(self, intr: InterruptRecord, run_fields: dict[str, Any]) -> None:
        """Store a pending interrupt (replacing one with the same key) and apply
        ``run_fields`` to the run in the same transaction."""
        ...

    def interrupts(self, run_id: str, step: int | None = None) -> list[InterruptRecord]:
        """Interrupts of the run (or of one step), by step, task path, seq."""
        ...

    def answer_interrupt(self, intr: InterruptRecord, answer: str) -> None:
        """Record ``answer`` (JSON text) for the interrupt ``intr``."""
        ...

    def record_attempt(self, attempt: AttemptRecord) -> None:
        """Record one failed attempt of an activation (kept for inspection, never hashed)."""
        ...

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """Failed attempts of the run, by step, task path, attempt."""
        ...

    # -- signals: pause and cancel requests from other processes ------------------------

    def send_signal(self, run_id: str, kind: str) -> None:
        """Ask the process executing the run to ``pause`` or ``cancel`` (idempotent)."""
        ...

    def signals(self, run_id: str) -> set[str]:
        """The signals waiting for the run."""
        ...

    def clear_signals(self, run_id: str) -> None:
        """Forget every signal of the run."""
        ...

    def visit_counts(self, run_id: str) -> dict[str, int]:
        """How many committed activations each node has in the run."""
        ...

    def usage_totals(self, run_id: str) -> tuple[int, dict[str, int]]:
        """(number of committed activations, their token usage summed per key) of the run;
        ``(0, {"input_tokens": 0, "output_tokens": 0})`` for a run with none."""
        ...

    # -- maintenance ----------------------------------------------------------------------

    def child_run_ids(self, run_id: str) -> list[str]:
        """Ids of the run's direct subgraph child runs (``run_id/<step>/<task_path>``)."""
        ...

    def delete_run(self, run_id: str) -> None:
        """Delete the run, its child runs and every row of theirs, in one transaction."""
        ...

    def migrate_run(
        self,
        run_id: str,
        *,
        state: Callable[[str], str],
        update: Callable[[str], str],
        fingerprint: str,
        graph_doc: str,
    ) -> None:
        """Rewrite a run's stored JSON to a new state-schema version in one transaction:
        ``state(raw)`` for the input and every snapshot, ``update(raw)`` for every
        committed update; the run then records ``fingerprint`` and ``graph_doc``. If a
        conversion raises, nothing changes."""
        ...

    def integrity_check(self) -> str:
        """``"ok"``, or a description of what the database itself reports damaged."""
        ...

    def table_sizes(self) -> dict[str, int]:
        """Bytes (or an estimate) held by each table, for ``flowstate doctor``."""
        ...

    def largest_runs(self, limit: int = 10) -> list[tuple[str, int]]:
        """The ``limit`` runs holding the most bytes, as ``(run_id, bytes)``, largest first."""
        ...

    def shrink_wal(self) -> None:
        """Best effort, when the last run executing on this store object finished: give
        space back (SQLite folds its write-ahead log). May do nothing; never raises."""
        ...

    def close(self) -> None:
        """Release the connection(s); the store object is not used afterwards."""
        ...


@runtime_checkable
class LeaseStore(CheckpointStore, Protocol, metaclass=_StoreProtocolMeta):
    """A store that keeps one writer per run: a lease ``(owner, epoch, expiry)`` on the
    run row. After ``acquire`` (or ``create_run(owner=...)``) the store object fences the
    run: every write touching it checks, inside its transaction, that the epoch is still
    current, and raises ``LeaseLost`` otherwise."""

    def acquire(self, run_id: str, owner: str, ttl: float, alive: OwnerAlive | None = None) -> int:
        """Take the run's lease for ``owner`` for ``ttl`` seconds and return the new epoch
        (the previous one plus 1). ``RunOwned`` while another owner holds an unexpired
        lease, unless ``alive(holder)`` says it is dead."""
        ...

    def heartbeat(self, run_id: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease by ``ttl``; False when it was taken over (stop executing)."""
        ...

    def release(self, run_id: str, owner: str, epoch: int) -> None:
        """Give the lease up, if ``owner`` at ``epoch`` still holds it; stop fencing."""
        ...

    def lease(self, run_id: str) -> tuple[str | None, int, float | None]:
        """``(owner, epoch, lease_until)`` of the run; ``RunNotFound`` when there is none."""
        ...


@runtime_checkable
class RowScanStore(CheckpointStore, Protocol, metaclass=_StoreProtocolMeta):
    """A store that can check and repair itself row by row (the SQLite store): what
    ``flowstate doctor`` uses beyond the ``CheckpointStore`` methods. Stores without it
    are checked by their own ``integrity_check``."""

    def damaged_rows(self, limit: int = 1000) -> list[tuple[str, str, int | None, str]]:
        """Every row that fails what a read checks, as ``(table, run id, step, problem)``
        (at most ``limit``); a table unreadable past a damaged page is one entry."""
        ...

    def quarantine_run(self, run_id: str) -> dict[str, int]:
        """Move a run's rows (child runs included) into ``quarantine_*`` tables in one
        transaction, deleting nothing; returns the rows moved per table."""
        ...

    def vacuum(self) -> None:
        """Compact the database file."""
        ...


@runtime_checkable
class EventStore(CheckpointStore, Protocol, metaclass=_StoreProtocolMeta):
    """A store that keeps the live events of runs (every store flowstate ships): the
    engine appends what it emits, and a process that does not execute the run (another
    service process, the inspector) follows it with ``events_since``. Events are JSON,
    bounded per run, and not the durable record."""

    def append_events(self, run_id: str, events: Sequence[tuple[int, str, str, float]]) -> None:
        """Add ``(seq, kind, data, created_at)`` rows of the run in one transaction (a seq
        already stored is kept as it is); the oldest beyond the per-run bound are dropped."""
        ...

    def events_since(
        self, run_id: str, after: int = 0, limit: int = 1000
    ) -> list[tuple[int, str, str, float]]:
        """The run's events with ``seq > after``, oldest first."""
        ...

    def last_event_seq(self, run_id: str) -> int:
        """The seq of the run's newest event (0 when none)."""
        ...


@runtime_checkable
class NotifyStore(CheckpointStore, Protocol, metaclass=_StoreProtocolMeta):
    """A store with ``LISTEN``/``NOTIFY`` (``PostgresStore``): a dedicated connection that
    waits for wake-ups, and a way to send one (inside a write transaction, at its commit).
    Stores without it are polled."""

    def listen(self, *channels: str) -> Any:
        """A listener on ``channels``: ``wait(timeout)`` returns the notices received
        (``[]`` on timeout); ``close()`` ends it. See ``PostgresListener``."""
        ...

    def notify(self, channel: str, payload: str = "") -> None:
        """Wake the listeners of ``channel``."""
        ...


@dataclass(frozen=True)
class CommitEntry:
    """What one ``commit`` call writes, for ``GroupCommitStore.commit_many``."""

    run_id: str
    writes: Sequence[WriteRecord] = ()
    step: StepRecord | None = None
    run_fields: dict[str, Any] | None = None
    hook: Callable[[Any], None] | None = None


@runtime_checkable
class GroupCommitStore(CheckpointStore, Protocol):
    """A store that commits several activations in one transaction (``SQLiteStore``):
    the engine groups the activations that finish in the same turn of its event loop
    (concurrent runs, a fan-out) into one commit, whose fixed cost (the transaction, the
    WAL pages, the locks) they then share."""

    def commit_many(
        self,
        entries: Sequence[CommitEntry],
        events: Any = None,
    ) -> list[Exception | None]:
        """Commit ``entries`` in one transaction, each run's all-or-nothing: one result
        per entry, None when committed or the error that left its run's entries out. A
        failure of the transaction itself raises (nothing was committed). ``events``
        (``{run_id: append_events rows}``) are written in the same transaction."""
        ...
