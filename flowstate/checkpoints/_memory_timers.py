"""``InMemoryStore``'s ``TimerStore``: wake-up times, schedules and firings, under the
tables' lock (the firing key plays the part of SQL's primary key)."""

from __future__ import annotations

from typing import Any

from flowstate.clock import get_clock
from flowstate.errors import ScheduleError, ScheduleNotFound

from ._memory_tables import Tables
from ._records import RunRecord, StepRecord
from ._timer_records import ScheduleRecord

__all__ = ["MemoryTimers"]


class MemoryTimers:
    """Mixin of ``InMemoryStore``: uses its ``_t``, ``_lock``, ``commits`` and
    ``create_run``."""

    _t: Tables
    _lock: Any
    commits: int

    def create_run(self, run: RunRecord, first_step: StepRecord, **kw: Any) -> None: ...

    def due_runs(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        with self._lock:
            due = [
                (rid, row.wake_at)
                for rid, row in self._t.runs.items()
                if row.wake_at is not None and row.wake_at <= now and row.status == "paused"
            ]
        return sorted(due, key=lambda d: (d[1], d[0]))[:limit]

    def wake_time(self, run_id: str) -> float | None:
        with self._lock:
            row = self._t.runs.get(run_id)
            return row.wake_at if row is not None and row.status == "paused" else None

    def next_wake(self) -> float | None:
        with self._lock:
            times = [
                r.wake_at
                for r in self._t.runs.values()
                if r.wake_at is not None and r.status == "paused"
            ]
        return min(times, default=None)

    def put_schedule(self, schedule: ScheduleRecord, *, replace: bool = False) -> None:
        with self._lock:
            if schedule.name in self._t.schedules and not replace:
                raise ScheduleError(
                    f"a schedule named {schedule.name!r} exists already: pick another name, "
                    f"or `flowstate schedule delete {schedule.name}` first"
                )
            self._t.schedules[schedule.name] = schedule
            self.commits += 1

    def get_schedule(self, name: str) -> ScheduleRecord:
        with self._lock:
            s = self._t.schedules.get(name)
        if s is None:
            raise ScheduleNotFound(name)
        return s

    def list_schedules(self) -> list[ScheduleRecord]:
        with self._lock:
            return [self._t.schedules[n] for n in sorted(self._t.schedules)]

    def update_schedule(
        self, name: str, *, paused: bool | None = None, next_fire: float | None = None
    ) -> ScheduleRecord:
        with self._lock:
            s = self.get_schedule(name)
            upd: dict[str, Any] = {"updated_at": get_clock().now()}
            if paused is not None:
                upd["paused"] = paused
            if next_fire is not None:
                upd["next_fire"] = float(next_fire)
            s = self._t.schedules[name] = s.model_copy(update=upd)
            self.commits += 1
            return s

    def delete_schedule(self, name: str) -> None:
        with self._lock:
            if self._t.schedules.pop(name, None) is None:
                raise ScheduleNotFound(name)
            self.commits += 1

    def fire_schedule(
        self, name: str, fire_time: float, next_fire: float, run: RunRecord, step0: StepRecord
    ) -> bool:
        with self._lock:
            key = (name, fire_time)
            if key in self._t.firings:
                return False
            self.create_run(run, step0)
            self._t.firings[key] = run.id
            s = self._t.schedules.get(name)
            if s is not None and s.next_fire < next_fire:
                self._t.schedules[name] = s.model_copy(
                    update={"next_fire": next_fire, "updated_at": get_clock().now()}
                )
            return True

    def firings(self, name: str) -> list[tuple[float, str]]:
        with self._lock:
            return sorted((t, rid) for (n, t), rid in self._t.firings.items() if n == name)
