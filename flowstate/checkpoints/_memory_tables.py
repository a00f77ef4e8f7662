"""``InMemoryStore``'s tables: run rows (record, mutable columns, lease) and per-run
dicts of records keyed by their primary keys, plus the value checks SQLite's strict row
validation would make."""

from __future__ import annotations

import threading
from typing import Any, get_args

from flowstate.errors import ConfigError

from ._records import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    WriteRecord,
)

__all__ = ["STATUSES", "Run", "Tables", "check_values"]

STATUSES = frozenset(get_args(RunStatus))


def check_values(run_id: str, fields: dict[str, Any]) -> None:
    """The type checks the run record's strict validation would make (SQLite makes them
    when the row is read back; here they are made before anything is written)."""
    if "status" in fields and fields["status"] not in STATUSES:
        raise ConfigError(
            f"run {run_id}: status must be one of {sorted(STATUSES)}, not {fields['status']!r}"
        )
    if "head_step" in fields and type(fields["head_step"]) is not int:
        raise ConfigError(f"run {run_id}: head_step must be an int, not {fields['head_step']!r}")
    if "error" in fields and fields["error"] is not None and type(fields["error"]) is not str:
        raise ConfigError(f"run {run_id}: error must be a string or None, not {fields['error']!r}")


class Run:
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
        "wake_at",
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
        self.wake_at: float | None = None
        """When the paused run's timer or deadline falls due (``_common.WAKE_AT``)."""

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


class Tables:
    """The shared "database": per-run dicts of records keyed by their primary keys."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[str, Run] = {}
        self.steps: dict[str, dict[int, StepRecord]] = {}
        self.writes: dict[str, dict[tuple[int, str], WriteRecord]] = {}
        self.effects: dict[str, dict[tuple[int, str, int], EffectRecord]] = {}
        self.interrupts: dict[str, dict[tuple[int, str, int], InterruptRecord]] = {}
        self.attempts: dict[str, dict[tuple[int, str, int], AttemptRecord]] = {}
        self.signals: dict[str, dict[str, float]] = {}
        self.schedules: dict[str, Any] = {}
        """Schedule records by name (``ScheduleRecord``)."""
        self.firings: dict[tuple[str, float], str] = {}
        """(schedule, fire time) -> the run that firing started."""
        self.events: dict[str, dict[int, tuple[int, str, str, float]]] = {}

    def per_run(self) -> tuple[dict[str, Any], ...]:
        return (
            self.events,
            self.writes,
            self.steps,
            self.effects,
            self.interrupts,
            self.attempts,
            self.signals,
            self.runs,
        )
