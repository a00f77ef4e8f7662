"""The checkpoint store's health, as the service sees it, and the tasks a storage fault
orphaned.

A storage fault (a full disk, a read-only or vanished file, a lost database connection)
ends an execution in the middle: the engine cannot record anything, often not even that
it stopped, so its task stays ``running`` with nothing executing it. The supervisor keeps
the last storage error (``/ready`` answers 503 with it), probes the store with a small
write, and once a probe succeeds hands the orphaned tasks back to the service, which
resumes them from their last commit. No restart needed.

Why a write probe and not only the last error: a read succeeds on a full disk, and a
store can fail a write without any task writing (admission, cancel). Why not only the
probe: a probe row is smaller than an activation, so a nearly full disk can pass it
while commits fail; the error a task met counts until a probe after it passes, and a
task that fails again right after its recovery reports again (with a growing pause
between probes, so a disk that stays full costs one probe every ``MAX_RETRY_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from flowstate.checkpoints import CheckpointStore
from flowstate.errors import FlowstateError, StoreIOError

__all__ = ["PROBE_RUN", "StoreSupervisor", "storage_fault"]

log = logging.getLogger("flowstate.service")

PROBE_RUN = "~flowstate-store-probe"
"""The run id the probe writes (and clears) a signal row for; no run has it (run ids
never start with ``~``)."""

RETRY_SECONDS = 1.0
"""First pause between probes while the store is unhealthy; doubled after every failure."""
MAX_RETRY_SECONDS = 30.0


def storage_fault(e: BaseException | None) -> bool:
    """Whether ``e`` is the store failing (the disk, the file, the connection), as opposed
    to the run, the graph or damaged rows."""
    return isinstance(e, StoreIOError)


class StoreSupervisor:
    """Probes the store; remembers its last write error and the tasks it orphaned."""

    def __init__(
        self,
        store: CheckpointStore,
        recover: Callable[[str], None],
        *,
        probe_seconds: float = 5.0,
    ) -> None:
        if not probe_seconds > 0:
            raise ValueError(f"probe_seconds must be positive, not {probe_seconds}")
        self.store = store
        self.recover = recover
        """``recover(run_id)`` resumes an orphaned task (raises on a storage fault)."""
        self.probe_seconds = probe_seconds
        self.error: str | None = None
        """The last storage error not yet followed by a passing probe; None: healthy."""
        self.since: float | None = None
        """When the store became unhealthy (time.time())."""
        self.orphans: set[str] = set()
        """Tasks whose execution a storage fault ended, waiting for the store."""
        self.recovered = 0
        """Orphaned tasks handed back so far."""
        self._retry = RETRY_SECONDS
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- reports ----------------------------------------------------------------------------

    def failed(self, error: BaseException | str, run_id: str | None = None) -> None:
        """A storage fault was met (by the execution of ``run_id``, when given)."""
        text = f"{error.code}: {error.message}" if isinstance(error, FlowstateError) else str(error)
        if self.error is None:
            self.since = time.time()
            log.error("the checkpoint store failed: %s", text)
        self.error = text[:2000]
        if run_id is not None:
            self.orphans.add(run_id)
        self._wake.set()

    def probe(self) -> bool:
        """One small write (a signal row for ``PROBE_RUN``, then cleared). True if it
        committed; otherwise the store is unhealthy with the probe's error."""
        try:
            self.store.send_signal(PROBE_RUN, "probe")
            self.store.clear_signals(PROBE_RUN)
        except Exception as e:  # any failure of the probe is the store's health
            self.failed(e)
            return False
        return True

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="store supervisor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            unhealthy = self.error is not None or bool(self.orphans)
            wait = self._retry if unhealthy else self.probe_seconds
            self._wake.clear()
            if unhealthy:
                await asyncio.sleep(wait)  # a report during the pause changes nothing
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                if self.error is not None:
                    continue  # a report woke us: retry after the pause
            try:
                self._tick(unhealthy)
            except Exception:  # never let the supervisor die; the next tick tries again
                log.exception("store supervisor tick failed")

    def _tick(self, unhealthy: bool) -> None:
        if not self.probe():
            self._retry = min(self._retry * 2, MAX_RETRY_SECONDS)
            return
        if not unhealthy:
            self._retry = RETRY_SECONDS  # a quiet healthy period: start over
            return
        if self.error is not None:
            log.info(
                "the checkpoint store accepts writes again (unhealthy for %.1f s)",
                time.time() - (self.since or time.time()),
            )
        self.error, self.since = None, None
        # pause longer before the next recovery, should these tasks fail again at once
        self._retry = min(self._retry * 2, MAX_RETRY_SECONDS)
        for run_id in sorted(self.orphans):
            try:
                self.recover(run_id)
            except StoreIOError as e:
                self.failed(e)
                return
            except FlowstateError as e:  # e.g. the run was deleted meanwhile
                log.warning("orphaned task %s not resumed: %s", run_id, e)
            self.orphans.discard(run_id)
            self.recovered += 1
