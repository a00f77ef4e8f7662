"""Rows of durable time: schedules, and the store capability that holds timers and
schedules (``TimerStore``)."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from ._records import RunRecord, StepRecord

__all__ = ["CatchUp", "ScheduleRecord", "TimerStore"]

CatchUp = Literal["skip", "all", "latest"]
"""What a schedule does with firing times missed while nothing was running it:
``skip`` starts none of them (the next firing is the next one in the future), ``all``
starts one run per missed time, oldest first, ``latest`` starts one run for the most
recent missed time only."""


class ScheduleRecord(BaseModel):
    """A schedule (a row of ``schedules``): start a run of ``graph`` with ``input`` at
    every time the cron expression names, in time zone ``tz``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str
    """Unique name (``flowstate schedule add NAME``)."""
    graph: str
    """Name of the graph it starts (a scheduler runs the schedules of the graphs it serves)."""
    cron: str
    """Five-field cron expression (``"0 7 * * 1-5"``), read by cronsim."""
    tz: str
    """IANA time zone the cron expression is read in (``"UTC"``, ``"Europe/Paris"``)."""
    input: str
    """The input of every run it starts, as JSON."""
    catchup: CatchUp = "skip"
    """What happens to firing times missed while no scheduler ran (see ``CatchUp``)."""
    paused: bool = False
    """A paused schedule fires nothing; resuming it applies ``catchup`` to what it missed."""
    next_fire: float
    """The next firing time not yet handled (seconds since the epoch)."""
    created_at: float
    updated_at: float


@runtime_checkable
class TimerStore(Protocol):
    """Timers and schedules, kept in the checkpoint database (every store implements it)."""

    def due_runs(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        """``(run_id, wake_at)`` of paused runs whose wake-up time is at or before ``now``,
        earliest first (child runs of subgraphs included: their parent wakes them)."""
        ...

    def wake_time(self, run_id: str) -> float | None:
        """The wake-up time of a paused run, or None."""
        ...

    def next_wake(self) -> float | None:
        """The earliest wake-up time of any paused run, or None."""
        ...

    def put_schedule(self, schedule: ScheduleRecord, *, replace: bool = False) -> None:
        """Store a new schedule (``ScheduleError`` if the name is taken, unless ``replace``)."""
        ...

    def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule named ``name`` (``ScheduleNotFound`` if none)."""
        ...

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        ...

    def update_schedule(
        self, name: str, *, paused: bool | None = None, next_fire: float | None = None
    ) -> ScheduleRecord:
        """Pause or resume a schedule, or move its next firing time."""
        ...

    def delete_schedule(self, name: str) -> None:
        """Remove a schedule (its firings and runs stay)."""
        ...

    def fire_schedule(
        self, name: str, fire_time: float, next_fire: float, run: RunRecord, step0: StepRecord
    ) -> bool:
        """In one transaction: record the firing ``(name, fire_time)``, create ``run`` with
        its first step, and move the schedule's next firing time to ``next_fire``. False
        (and nothing written) when that firing was recorded already, by anyone."""
        ...

    def firings(self, name: str) -> list[tuple[float, str]]:
        """``(fire_time, run_id)`` of every firing of the schedule, oldest first."""
        ...
