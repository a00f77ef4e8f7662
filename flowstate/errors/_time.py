"""Timers and schedules (FS24x)."""

from __future__ import annotations

from ._base import FlowstateError


class TimerError(FlowstateError, ValueError):
    """``ctx.sleep``, ``ctx.sleep_until`` or an interrupt ``timeout`` was given something
    that is not a duration or a time (a negative or non-finite number, a naive datetime)."""

    code = "FS240"


class ScheduleError(FlowstateError, ValueError):
    """A schedule cannot be created or fired as given: its cron expression, time zone,
    catch-up policy, input or graph; the message names the field and the fix."""

    code = "FS241"


class ScheduleNotFound(ScheduleError):
    """No schedule with that name in the store."""

    code = "FS242"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"no schedule {name!r} in this store; `flowstate schedule list` lists them"
        )
