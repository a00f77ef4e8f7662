"""Durable timers: ``ctx.sleep`` / ``ctx.sleep_until`` and interrupt deadlines.

A timer is journaled like an effect before anything waits on it: the journal holds when
the wait began and when it ends, so a resume (after a crash, in another process) never
restarts it, and replay serves the record without waiting. A wait shorter than the hold
threshold is awaited in process; a longer one pauses the run (``paused``, the wake-up time
on the run row) and frees the process, and whoever wakes runs (``wake_due``) resumes it
when the time comes. A resume before then pauses again until the journaled time: a timer
is never cut short by a resume.

An interrupt with a ``timeout`` journals its deadline the same way; when the waker finds
it unanswered at the deadline it answers it with a timeout marker (an answer like any
other, so it is recorded and replays), and the node gets its ``default`` or ``TimedOut``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from flowstate.checkpoints import InterruptRecord
from flowstate.clock import get_clock, iso, to_timestamp
from flowstate.errors import RunStateError, TimerError

from ._context import Interrupted
from ._interrupts import TIMER_SEQ, UNSET

if TYPE_CHECKING:
    from datetime import datetime

    from ._context import NodeContext

__all__ = [
    "DEADLINE_EFFECT",
    "HOLD_SECONDS",
    "SLEEP_EFFECT",
    "TIMEOUT_KEY",
    "NotDue",
    "TimedOut",
    "pause_reason",
    "record_pause",
    "sleep",
    "timed_interrupt",
]

SLEEP_EFFECT: Final = "flowstate.sleep"
"""Journal name of a timer: response ``{"began": t0, "wake_at": t1}``."""
DEADLINE_EFFECT: Final = "flowstate.deadline"
"""Journal name of an interrupt deadline: response ``{"deadline": t}``."""
TIMEOUT_KEY: Final = "__flowstate_timed_out__"
"""Key of the answer the waker stores for an interrupt whose deadline passed."""
HOLD_SECONDS: Final = 5.0
"""Default of ``ctx.sleep(..., hold=)``: waits at most this long are awaited in process;
longer ones pause the run and free the process."""


@dataclass(frozen=True)
class TimedOut:
    """What ``ctx.interrupt(..., timeout=...)`` returns when nobody answered by the deadline
    and no ``default`` was given: test ``isinstance(answer, TimedOut)`` to escalate."""

    deadline: float
    """When the interrupt timed out (seconds since the epoch)."""


class NotDue(RunStateError):
    """A waker found the run no longer due (another waker, or a human, resumed it first)."""

    code = "FS243"


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TimerError(f"{what} must be a finite number of seconds, not {value!r}")
    if value < 0:
        raise TimerError(f"{what} must not be negative, got {value!r}; use 0 for no wait")
    return float(value)


async def sleep(
    ctx: NodeContext,
    *,
    seconds: float | None = None,
    until: float | datetime | None = None,
    hold: float | None = None,
) -> None:
    """The body of ``ctx.sleep`` / ``ctx.sleep_until``."""
    if until is not None:
        wake = to_timestamp(until)
        args: dict[str, Any] = {"until": wake}
    else:
        args = {"seconds": _seconds(seconds, f"ctx.sleep of node '{ctx.node}'")}
    limit = HOLD_SECONDS if hold is None else _seconds(hold, "hold")
    clock = get_clock()

    def begin(seconds: float | None = None, until: float | None = None) -> dict[str, float]:
        now = clock.now()
        return {"began": now, "wake_at": until if until is not None else now + (seconds or 0)}

    rec = await ctx._effect(SLEEP_EFFECT, begin, **args)
    if ctx._replay:
        return  # replay never waits
    wake_at = float(rec["wake_at"])
    remaining = wake_at - clock.now()
    if remaining <= 0:
        return
    if remaining <= limit:
        await clock.sleep(remaining)
        return
    raise Interrupted(
        TIMER_SEQ,
        json.dumps({"kind": "sleep", "began": rec["began"], "wake_at": wake_at}),
        wake_at=wake_at,
    )


async def timed_interrupt(ctx: NodeContext, payload: Any, timeout: float, default: Any) -> Any:
    """The body of ``ctx.interrupt(payload, timeout=..., default=...)``."""
    seconds = _seconds(timeout, f"the interrupt timeout of node '{ctx.node}'")
    seq = ctx._interrupt_seq
    clock = get_clock()

    def begin(timeout: float, seq: int) -> dict[str, float]:
        return {"deadline": clock.now() + timeout}

    # journaled before the answer is looked at, so the effect order is the same whether
    # or not an answer is there
    rec = await ctx._effect(DEADLINE_EFFECT, begin, timeout=seconds, seq=seq)
    deadline = float(rec["deadline"])
    try:
        value = ctx._interrupt(payload)
    except Interrupted as i:
        i.wake_at = deadline
        raise
    if isinstance(value, dict) and TIMEOUT_KEY in value:
        return TimedOut(deadline) if default is UNSET else default
    return value


def record_pause(
    store: Any, run_id: str, step: int, task_path: str, node: str, i: Interrupted
) -> None:
    """Record an interrupt (or timer) and pause the run, with its wake-up time if any."""
    now = get_clock().now()
    if i.seq == TIMER_SEQ:
        reason = f"sleeping in '{node}' until {iso(i.wake_at or now)}"
    elif i.wake_at is not None:
        reason = f"interrupt in '{node}' (deadline {iso(i.wake_at)})"
    else:
        reason = f"interrupt in '{node}'"
    fields: dict[str, Any] = {"status": "paused", "error": reason, "head_step": step}
    if i.wake_at is not None:
        fields["wake_at"] = i.wake_at
    row = InterruptRecord(
        run_id=run_id, step=step, task_path=task_path, seq=i.seq, payload=i.payload, created_at=now
    )
    store.record_interrupt(row, fields)
    if i.wake_at is not None and i.seq >= 0:
        # the deadline, stored next to the interrupt for views (pending_interrupts)
        deadline = {"kind": "deadline", "seq": i.seq, "wake_at": i.wake_at}
        store.record_interrupt(
            row.model_copy(update={"seq": TIMER_SEQ, "payload": json.dumps(deadline)}), fields
        )


def pause_reason(interrupts: list[tuple[Any, Interrupted]]) -> str | None:
    """Why a step with no pending interrupt paused when one of its activations sleeps."""
    sleeping = [(t, i) for t, i in interrupts if i.seq == TIMER_SEQ and i.wake_at is not None]
    if not sleeping:
        return None
    task, first = min(sleeping, key=lambda ti: ti[1].wake_at or 0.0)
    return f"sleeping in '{task.node}' until {iso(first.wake_at or 0.0)}"
