"""Errors of a run's state: not found, owned, fenced, edited, threads (FS2xx)."""

from __future__ import annotations

from ._base import FlowstateError, resume_hint


class RunNotFound(FlowstateError):
    code = "FS206"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run '{run_id}' in this store; `flowstate runs` lists the runs")


class ThreadNotFound(RunNotFound):
    """No run of the store is on that thread."""

    code = "FS228"

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        FlowstateError.__init__(
            self,
            f"no thread {thread_id!r} in this store: list threads with `flowstate threads`, "
            f"or start it with `app.run(input, thread_id={thread_id!r})`",
        )


class RunStateError(FlowstateError):
    """The run's status does not allow the operation."""

    code = "FS207"


class RunOwned(RunStateError):
    """Another live process holds the run's lease: one writer per run."""

    code = "FS212"
    retryable = True

    def __init__(self, run_id: str, owner: str, lease_until: float) -> None:
        import time

        self.run_id = run_id
        self.owner = owner
        self.lease_until = lease_until
        left = max(0.0, lease_until - time.time())
        super().__init__(
            f"run {run_id} is being executed by {owner} (its lease runs {left:.1f}s more); "
            f"wait for it: `flowstate resume {run_id} --wait SECONDS` (Python: "
            "`resume(run_id, wait=SECONDS)`), or resume after its lease expires if that "
            "process died"
        )


class LeaseLost(RunStateError):
    """This process's lease on a run was taken over; its commits are rejected (fenced)."""

    code = "FS213"

    def __init__(self, run_id: str, epoch: int, detail: str = "") -> None:
        self.run_id = run_id
        self.epoch = epoch
        super().__init__(
            f"this process no longer owns run {run_id} (epoch {epoch} was taken over"
            f"{': ' + detail if detail else ''}); its commit was rejected and nothing of it "
            "was stored. Another process continues the run."
        )


class EditRefused(RunStateError):
    """An edit of a stored run (``update_state``, ``resume(update=..., goto=...)``) cannot
    apply where the run is: the message says why and what to do instead."""

    code = "FS222"

    def __init__(self, run_id: str, detail: str, owner: str | None = None) -> None:
        self.run_id = run_id
        self.owner = owner
        """The process executing the run (``EditWhileRunning``), else None."""
        super().__init__(f"cannot edit run {run_id}: {detail}")


class EditWhileRunning(EditRefused):
    """The run to edit is being executed by a live process (it holds the run's lease):
    pause it, and edit it once it has stopped."""

    code = "FS221"


class CancelledElsewhere(RunStateError):
    """Another process cancelled the run: once that cancel is acknowledged (its
    ``cancelled`` status committed), the owner's commits are refused."""

    code = "FS214"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} was cancelled from another process; this commit was refused and "
            "nothing of it was stored. Resume the run to continue it"
        )


class ThreadBusy(RunStateError):
    """New input for a thread whose last turn is running (a live lease), queued, paused or
    failed, under the ``reject`` strategy (the default)."""

    code = "FS225"

    def __init__(self, thread_id: str, turn: int, run_id: str, status: str, hint: str) -> None:
        self.thread_id, self.turn, self.run_id, self.status = thread_id, turn, run_id, status
        super().__init__(
            f"thread {thread_id!r} has turn {turn} (run {run_id}) {status}, so the new "
            f"input was rejected and nothing was stored: {hint}"
        )


class TurnConflict(RunStateError):
    """Two callers started the same turn of a thread: the other one was first."""

    code = "FS226"
    retryable = True

    def __init__(self, thread_id: str, turn: int, run_id: str) -> None:
        self.thread_id, self.turn, self.run_id = thread_id, turn, run_id
        super().__init__(
            f"turn {turn} of thread {thread_id!r} (or run id {run_id}) is already stored: "
            "another caller started it first and run "
            f"{run_id} was not created; send the input again (its strategy then decides: "
            "reject, enqueue or interrupt)"
        )


class TurnNotReady(RunStateError):
    """A queued turn cannot start before the turn ahead of it has finished."""

    code = "FS227"

    def __init__(self, run_id: str, thread_id: str, turn: int, ahead: str, status: str) -> None:
        self.run_id, self.thread_id, self.turn = run_id, thread_id, turn
        super().__init__(
            f"run {run_id} is turn {turn} of thread {thread_id!r}, queued behind turn "
            f"{turn - 1} (run {ahead}), which is {status}: it starts from that turn's final "
            f"state, so finish it first ({resume_hint(ahead)}) or cancel it "
            f"(`app.cancel({ahead!r})`; the queued turn then starts from its last commit)"
        )


class EffectError(FlowstateError):
    """An effect's request or result cannot be journaled as JSON."""

    code = "FS208"
