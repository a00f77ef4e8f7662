"""What the checkpoint stores share whatever they keep rows in: the column lists and the
row hashes, row decoding and validation, the mutable-column check, run filters, the
lease-takeover rule and the errors they raise with the same words.

Nothing here knows SQL; ``SQLiteStore``, ``PostgresStore`` and ``InMemoryStore`` call
these helpers so that the three backends cannot drift apart.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from flowstate.errors import (
    CancelledElsewhere,
    ConfigError,
    CorruptRowError,
    LeaseLost,
    RunOwned,
    RunStateError,
    StoreError,
    TurnConflict,
)

from ._records import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    StepRecord,
    WriteRecord,
    row_hash,
)

RUN_COLS = tuple(RunRecord.model_fields)
MUTABLE = ("status", "head_step", "error", "updated_at")
"""The run columns that may change after creation, in their ``mhash`` order."""
RUN_THREAD = ("thread_id", "turn")
"""Immutable run columns added by migration m301: hashed only when set, so the ``hash`` of
a run stored before them (and of any run on no thread) is what it always was."""
RUN_IMMUTABLE = tuple(c for c in RUN_COLS if c not in MUTABLE and c not in RUN_THREAD)
"""The immutable run columns every run's ``hash`` covers (then ``RUN_THREAD`` when set)."""
STEP_COLS = tuple(StepRecord.model_fields)
WRITE_COLS = tuple(WriteRecord.model_fields)
EFFECT_COLS = tuple(EffectRecord.model_fields)
INTERRUPT_COLS = tuple(InterruptRecord.model_fields)
ATTEMPT_COLS = tuple(AttemptRecord.model_fields)
TABLE_MODELS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    "runs": (RunRecord, RUN_COLS),
    "steps": (StepRecord, STEP_COLS),
    "writes": (WriteRecord, WRITE_COLS),
    "effects": (EffectRecord, EFFECT_COLS),
    "interrupts": (InterruptRecord, INTERRUPT_COLS),
}
"""Record model and column order of every hashed table."""

PER_RUN_TABLES = (
    ("events", "run_id"),
    ("writes", "run_id"),
    ("steps", "run_id"),
    ("effects", "run_id"),
    ("interrupts", "run_id"),
    ("attempts", "run_id"),
    ("signals", "run_id"),
    ("runs", "id"),
)
"""Every table holding rows of a run, with its run-id column, in deletion order."""

NO_STOP = 2**62
"""The ``stop`` of a step range left open."""


# -- row values and hashes ---------------------------------------------------------------


def run_hash(get: Callable[[str], Any]) -> str:
    """The ``hash`` of a run row whose column values ``get(column)`` returns: its immutable
    columns, the thread columns only when the run is on a thread (``RUN_THREAD``)."""
    thread = [get(c) for c in RUN_THREAD]
    extra = thread if any(v is not None for v in thread) else []
    return row_hash(*(get(c) for c in RUN_IMMUTABLE), *extra)


def run_values(run: RunRecord) -> list[Any]:
    """The run's columns in ``RUN_COLS`` order, then its ``hash`` and ``mhash``."""
    vals = [getattr(run, c) for c in RUN_COLS]
    return [
        *vals,
        run_hash(lambda c: getattr(run, c)),
        row_hash(*(getattr(run, c) for c in MUTABLE)),
    ]


def values(record: Any, cols: Sequence[str]) -> list[Any]:
    """The record's ``cols``, then their ``hash``."""
    get = _getters.get(cols)  # type: ignore[call-overload]
    if get is None:
        get = _getters[tuple(cols)] = operator.attrgetter(*cols)
    vals = list(get(record)) if len(cols) > 1 else [get(record)]
    vals.append(row_hash(*vals))
    return vals


_getters: dict[tuple[str, ...], Callable[[Any], Any]] = {}
"""One ``attrgetter`` per column list (``values``)."""


def decode_row(table: str, row: Sequence[Any]) -> Any:
    """Check a stored row's hash(es) and validate it strictly into its record; a
    ``CorruptRowError`` naming table, run and step otherwise. ``row`` is the table's
    columns then ``hash`` (and for runs ``mhash``)."""
    model, cols = TABLE_MODELS[table]
    if table == "runs":
        d = dict(zip(cols, row[: len(cols)], strict=True))
        rid = str(d.get("id"))
        if (
            run_hash(d.__getitem__) != row[len(cols)]
            or row_hash(*(d[c] for c in MUTABLE)) != row[len(cols) + 1]
        ):
            raise CorruptRowError("runs", rid, None, "integrity hash mismatch")
        try:
            return model.model_validate(d)
        except ValidationError as e:
            raise CorruptRowError("runs", rid, None, f"invalid row: {e}") from None
    vals, stored_hash = list(row[: len(cols)]), row[len(cols)]
    run_id = str(vals[0]) if vals else "?"
    step = vals[1] if len(vals) > 1 and isinstance(vals[1], int) else None
    if row_hash(*vals) != stored_hash:
        raise CorruptRowError(table, run_id, step, "integrity hash mismatch")
    try:
        return model.model_validate(dict(zip(cols, vals, strict=True)))
    except ValidationError as e:
        raise CorruptRowError(table, run_id, step, f"invalid row: {e}") from None


def hashed_columns(table: str) -> tuple[str, ...]:
    """The columns a read of ``table`` selects for ``decode_row``."""
    _, cols = TABLE_MODELS[table]
    return (*cols, "hash", "mhash") if table == "runs" else (*cols, "hash")


def attempt_from_row(row: Sequence[Any]) -> AttemptRecord:
    """An ``attempts`` row (``ATTEMPT_COLS`` order) validated into its record."""
    return AttemptRecord.model_validate(dict(zip(ATTEMPT_COLS, row, strict=True)))


SUPERSEDED = "superseded by resume(rerun_step=True): "
"""How an ``attempts`` row that holds a superseded write begins (its attempt number is
negative); the write follows as JSON."""


def superseded_text(w: WriteRecord) -> str:
    """The ``attempts.error`` text keeping write ``w`` superseded by a step re-run."""
    return SUPERSEDED + w.model_dump_json(exclude={"run_id", "step", "task_path"})


# -- runs ----------------------------------------------------------------------------------


WAKE_AT = "wake_at"
"""The run column holding when a paused run's timer or interrupt deadline falls due. It is
an index for whoever wakes runs, outside the row hashes (like the lease columns): the
effect journal holds the authoritative time, so a wrong value can only make a run be
looked at early (it pauses again) or late. Changing the status clears it, except to
``paused`` where it keeps the earliest of the values given while paused."""


def check_mutable(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(MUTABLE) - {WAKE_AT}
    if unknown:
        raise ConfigError(
            f"run fields {sorted(unknown)} cannot change after creation; only "
            f"{', '.join(MUTABLE)} can"
        )


def run_filters(
    *,
    status: str | None = None,
    graph: str | None = None,
    parent_id: str | None = None,
    before: float | None = None,
) -> list[tuple[str, str, Any]]:
    """``list_runs``' column filters as ``(column, operator, value)``, in a fixed order;
    the backend renders them (and the ``include_children`` test) in its own SQL."""
    out: list[tuple[str, str, Any]] = []
    if status is not None:
        out.append(("status", "=", status))
    if graph is not None:
        out.append(("graph", "=", graph))
    if parent_id is not None:
        out.append(("parent_id", "=", parent_id))
    if before is not None:
        out.append(("created_at", "<", before))
    return out


def input_converter(
    run: RunRecord, state: Callable[[str], str], update: Callable[[str], str]
) -> Callable[[str], str]:
    """How ``migrate_run`` converts the run's ``input``: a thread's later turn (turn > 1)
    stores the turn's own input, an update, not a state (its state is in step 0)."""
    return update if run.turn is not None and run.turn > 1 else state


def turn_taken_error(run: RunRecord) -> TurnConflict:
    return TurnConflict(str(run.thread_id), int(run.turn or 0), run.id)


def run_exists_error(run_id: str) -> RunStateError:
    return RunStateError(
        f"a run with id '{run_id}' already exists: resume it "
        f"(`flowstate resume {run_id}`) or choose another run id"
    )


def duplicate_write_error(run_id: str, w: WriteRecord) -> StoreError:
    return StoreError(
        f"activation '{w.task_path}' of run {run_id} at step {w.step} is "
        "already committed (table 'writes'), so this commit of it was refused "
        "and nothing of it was stored. Only one process may execute a run at a "
        f"time: check `flowstate runs` for another worker running {run_id}"
    )


# -- child runs ------------------------------------------------------------------------------


def children_range(run_id: str) -> tuple[str, str]:
    """``[lo, hi)`` holding exactly the texts that start with ``run_id + "/"``.

    In byte order (SQLite's BINARY collation, Postgres' ``COLLATE "C"``: memcmp of UTF-8,
    i.e. code point order), a text with that prefix sorts at or after ``run_id/`` and
    before ``run_id0`` (``'0'`` is the character after ``'/'``), and every text in between
    has the prefix. Unlike ``LIKE`` this is case-sensitive, has no wildcard or escape
    character, and can use the primary-key index of every table.
    """
    return run_id + "/", run_id + chr(ord("/") + 1)


def is_direct_child(prefix: str, rid: str) -> bool:
    """``rid`` is ``prefix`` + ``<step>/<task_path>`` (``prefix`` is the parent id + "/")."""
    step, sep, task = rid[len(prefix) :].partition("/")
    return bool(sep and task and "/" not in task and step.isascii() and step.isdigit())


def direct_children(prefix: str, ids: Sequence[Any]) -> list[str]:
    """The ids of ``ids`` (in their order) that are direct children; non-text ids skipped."""
    return [rid for rid in ids if isinstance(rid, str) and is_direct_child(prefix, rid)]


def family(run_id: str) -> Callable[[str], bool]:
    """``rid == run_id`` or ``rid`` starts with ``run_id + "/"``: exact, case-sensitive,
    no wildcard (the same rows as the SQL stores' byte range)."""
    prefix = run_id + "/"
    return lambda rid: rid == run_id or rid.startswith(prefix)


# -- one writer per run: leases and fencing ----------------------------------------------------


def check_fence(
    run_id: str,
    fence: tuple[str, int] | None,
    current: Sequence[Any] | None,
    *,
    cancelled: bool = False,
) -> None:
    """Raise ``LeaseLost`` unless the run's ``current`` (owner, epoch) is still ``fence``
    (``current`` None: the run is gone; ``fence`` None: nothing to check), and
    ``CancelledElsewhere`` while another process's cancel request is pending
    (``cancelled``): once a cancel is acknowledged nothing of the owner commits."""
    if fence is None:
        return
    if current is None or (current[0], current[1]) != fence:
        now_owner = f"now held by {current[0]} at epoch {current[1]}" if current else "run deleted"
        raise LeaseLost(run_id, fence[1], now_owner)
    if cancelled:
        raise CancelledElsewhere(run_id)


def next_epoch(
    run_id: str,
    owner: str,
    holder: str | None,
    epoch: int | None,
    until: float | None,
    now: float,
    alive: Any = None,
) -> int:
    """The epoch ``owner`` takes the run's lease at, or ``RunOwned`` while another live
    owner holds an unexpired one. ``alive(holder) -> bool|None`` may declare the holder
    dead before its lease expires."""
    if holder and holder != owner and until is not None and until > now:
        if alive is None or alive(holder) is not False:
            raise RunOwned(run_id, holder, until)
    return int(epoch or 0) + 1


def lease_tuple(row: Sequence[Any]) -> tuple[str | None, int, float | None]:
    """(owner, epoch, lease_until) of a stored ``(owner, epoch, lease_until)`` row."""
    return (row[0], int(row[1] or 0), row[2])


# -- state-schema migration of a stored run ----------------------------------------------------


def migrated_rows(
    run: RunRecord,
    steps: Sequence[StepRecord],
    writes: Sequence[WriteRecord],
    *,
    state: Callable[[str], str],
    update: Callable[[str], str],
    fingerprint: str,
    graph_doc: str,
    seal: Callable[[str, Any], Any] = lambda table, record: record,
) -> tuple[list[Any], list[tuple[StepRecord, str]], list[tuple[WriteRecord, str]]]:
    """What ``migrate_run`` writes, computed before anything is written (so a conversion
    that raises changes nothing): the run's new ``(input, fingerprint, graph_doc, hash)``,
    then every snapshot step with its new hash, then every write with its new hash. The
    records come in opened; ``seal(table, record)`` seals them again (``_crypto``): every
    sealed column changes then, so the caller writes ``tasks`` and ``goto`` back too."""
    new_run = seal(
        "runs",
        run.model_copy(
            update={
                "input": input_converter(run, state, update)(run.input),
                "fingerprint": fingerprint,
                "graph_doc": graph_doc,
            }
        ),
    )
    run_vals = [
        new_run.input,
        fingerprint,
        graph_doc,
        run_hash(lambda c: getattr(new_run, c)),
    ]
    new_steps: list[tuple[StepRecord, str]] = []
    for st in steps:
        if st.snapshot is not None:
            new = seal("steps", st.model_copy(update={"snapshot": state(st.snapshot)}))
            new_steps.append((new, values(new, STEP_COLS)[-1]))
    new_writes: list[tuple[WriteRecord, str]] = []
    for w in writes:
        new_w = seal("writes", w.model_copy(update={"update": update(w.update)}))
        new_writes.append((new_w, values(new_w, WRITE_COLS)[-1]))
    return run_vals, new_steps, new_writes


def sum_usage(raws: Iterable[str]) -> dict[str, int]:
    """Token counts summed over ``writes.usage`` JSON texts (unreadable ones skipped).
    Per-model keys (``input_tokens@MODEL``) are summed too: they repeat the totals, split by
    model, so a reader adding up tokens skips the keys with an ``@``."""
    total = {"input_tokens": 0, "output_tokens": 0}
    for raw in raws:
        try:
            data = json.loads(raw or "{}")
        except ValueError:
            continue
        if isinstance(data, dict):
            for k, v in data.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    total[str(k)] = total.get(str(k), 0) + int(v)
    return total
