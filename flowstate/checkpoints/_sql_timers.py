"""``TimerStore`` on SQL (shared by ``SQLiteStore`` and ``PostgresStore``): wake-up
times of paused runs, schedules, and the firings table whose primary key makes each
firing start one run, whoever fires it and however many schedulers race."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from flowstate.clock import get_clock
from flowstate.errors import ScheduleError, ScheduleNotFound

from ._common import STEP_COLS, run_exists_error, run_values, values
from ._records import RunRecord, StepRecord
from ._timer_records import ScheduleRecord

__all__ = ["SQLTimers"]

_SCHEDULE_COLS = tuple(ScheduleRecord.model_fields)
_SELECT = "SELECT " + ", ".join(f'"{c}"' for c in _SCHEDULE_COLS) + " FROM {schedules}"
_INSERT = (
    "INSERT INTO {schedules} ("
    + ", ".join(f'"{c}"' for c in _SCHEDULE_COLS)
    + ") VALUES ("
    + ", ".join("?" for _ in _SCHEDULE_COLS)
    + ")"
)


def _schedule(row: Sequence[Any]) -> ScheduleRecord:
    d = dict(zip(_SCHEDULE_COLS, row, strict=True))
    d["paused"] = bool(d["paused"])
    return ScheduleRecord.model_validate(d)


class SQLTimers:
    """Timer and schedule rows; the host store supplies ``write``, ``_read``, ``_stmt``,
    ``_insert_stmt`` and ``_UNIQUE``."""

    write: Callable[[], AbstractContextManager[Any]]
    _read: Callable[..., list[Any]]
    _stmt: Callable[[str], Any]
    _insert_stmt: Callable[[str, Sequence[str], str], Any]
    _UNIQUE: ClassVar[type[Exception]]

    # -- timers --------------------------------------------------------------------------

    def due_runs(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        rows = self._read(
            self._stmt(
                'SELECT "id", "wake_at" FROM {runs} WHERE "wake_at" IS NOT NULL AND '
                '"wake_at" <= ? AND "status" = \'paused\' ORDER BY "wake_at", "id" LIMIT ?'
            ),
            [now, limit],
        )
        return [(str(r[0]), float(r[1])) for r in rows]

    def wake_time(self, run_id: str) -> float | None:
        rows = self._read(
            self._stmt('SELECT "wake_at" FROM {runs} WHERE "id" = ? AND "status" = \'paused\''),
            [run_id],
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def next_wake(self) -> float | None:
        rows = self._read(
            self._stmt('SELECT MIN("wake_at") FROM {runs} WHERE "status" = \'paused\'')
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- schedules -----------------------------------------------------------------------

    def put_schedule(self, schedule: ScheduleRecord, *, replace: bool = False) -> None:
        vals = [getattr(schedule, c) for c in _SCHEDULE_COLS]
        vals[_SCHEDULE_COLS.index("paused")] = int(schedule.paused)
        with self.write() as c:
            if replace:
                c.execute(self._stmt('DELETE FROM {schedules} WHERE "name" = ?'), [schedule.name])
            try:
                c.execute(self._stmt(_INSERT), vals)
            except self._UNIQUE:
                raise ScheduleError(
                    f"a schedule named {schedule.name!r} exists already: pick another name, "
                    f"or `flowstate schedule delete {schedule.name}` first"
                ) from None

    def get_schedule(self, name: str) -> ScheduleRecord:
        rows = self._read(self._stmt(_SELECT + ' WHERE "name" = ?'), [name])
        if not rows:
            raise ScheduleNotFound(name)
        return _schedule(rows[0])

    def list_schedules(self) -> list[ScheduleRecord]:
        return [_schedule(r) for r in self._read(self._stmt(_SELECT + ' ORDER BY "name"'))]

    def update_schedule(
        self, name: str, *, paused: bool | None = None, next_fire: float | None = None
    ) -> ScheduleRecord:
        sets, params = "", []
        if paused is not None:
            sets += '"paused" = ?, '
            params.append(int(paused))
        if next_fire is not None:
            sets += '"next_fire" = ?, '
            params.append(float(next_fire))
        with self.write() as c:
            cur = c.execute(
                self._stmt(f'UPDATE {{schedules}} SET {sets}"updated_at" = ? WHERE "name" = ?'),
                [*params, get_clock().now(), name],
            )
            if cur.rowcount != 1:
                raise ScheduleNotFound(name)
        return self.get_schedule(name)

    def delete_schedule(self, name: str) -> None:
        with self.write() as c:
            cur = c.execute(self._stmt('DELETE FROM {schedules} WHERE "name" = ?'), [name])
            if cur.rowcount != 1:
                raise ScheduleNotFound(name)

    def fire_schedule(
        self, name: str, fire_time: float, next_fire: float, run: RunRecord, step0: StepRecord
    ) -> bool:
        with self.write() as c:
            cur = c.execute(
                self._stmt(
                    'INSERT INTO {firings} ("schedule", "fire_time", "run_id", "created_at") '
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
                ),
                [name, fire_time, run.id, get_clock().now()],
            )
            if cur.rowcount != 1:
                return False  # fired already, by this or another scheduler
            try:
                c.execute(
                    self._stmt(
                        "INSERT INTO {runs} ("
                        + ", ".join(f'"{k}"' for k in RunRecord.model_fields)
                        + ', "hash", "mhash") VALUES ('
                        + ", ".join("?" for _ in range(len(RunRecord.model_fields) + 2))
                        + ")"
                    ),
                    run_values(run),
                )
            except self._UNIQUE:
                raise run_exists_error(run.id) from None
            c.execute(self._insert_stmt("steps", STEP_COLS, ""), values(step0, STEP_COLS))
            c.execute(
                self._stmt(
                    'UPDATE {schedules} SET "next_fire" = ?, "updated_at" = ? '
                    'WHERE "name" = ? AND "next_fire" < ?'
                ),
                [next_fire, get_clock().now(), name, next_fire],
            )
        return True

    def firings(self, name: str) -> list[tuple[float, str]]:
        rows = self._read(
            self._stmt(
                'SELECT "fire_time", "run_id" FROM {firings} WHERE "schedule" = ? '
                'ORDER BY "fire_time"'
            ),
            [name],
        )
        return [(float(r[0]), str(r[1])) for r in rows]
