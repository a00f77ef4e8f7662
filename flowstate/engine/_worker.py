"""A fleet worker: claims queued runs (and runs whose worker died) from the store's queue
and executes them through ``resume``'s path (lease, heartbeat, fencing on every commit).

- **Claiming**: ``RunQueue.claim`` (``FOR UPDATE … SKIP LOCKED``) up to the free slots;
  then ``resume`` takes the run's lease. A graph whose stored fingerprint this worker's
  code cannot run (``GraphMismatch``) is handed back uncounted and skipped by this worker,
  so a rolling deploy never dead-letters a run: a compatible worker takes it.
- **Waking**: on PostgreSQL, ``store.listen(FLEET_CHANNEL)`` (a dedicated connection,
  in a thread of its own); a ``work:`` notice wakes the claim loop at once, a
  ``signal:cancel:`` notice for a run held here cancels its execution at once, and a
  reconnect re-reads both. On SQLite, ``PRAGMA data_version`` polled every 50 ms (it
  moves when another process commits) does the same. Without notices (or when that
  connection is down) the loop polls, sleeping until the earliest claim or lease expiry
  it knows of, at most ``poll`` seconds.
- **Sessions** (PostgreSQL): the server ends a session of this worker idle inside a
  transaction for half a lease, and no statement waits on a row lock for more than a
  lease (``PostgresStore.session_limits``), so a worker frozen mid-transaction cannot
  hold up the takeover of its runs with the row locks it holds.
- **Rescue slots**: a saturated worker still claims runs left ``running`` by a dead
  worker, up to as many again as its concurrency, so takeovers do not wait for free
  slots.
- **Heartbeat**: every ``lease_ttl / 3`` the worker row and the claims it holds are
  renewed (the run leases have their own heartbeat in the execution).
- **Drain**: ``stop()`` (SIGTERM in ``flowstate worker``) stops claiming; the runs held
  get ``drain_timeout`` seconds to finish; the rest are handed back: their leases are
  freed at the SQL level while this store object keeps its fences, so nothing of the
  interrupted executions can commit any more, and another worker takes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowstate.errors import (
    CancelledElsewhere,
    GraphMismatch,
    LeaseLost,
    NodeFailed,
    NoWorkerGraphs,
    RunOwned,
    StoreIOError,
)

from ._app import CompiledGraph
from ._enqueue import run_queue
from ._lease import local_owner_alive, new_owner, retire

__all__ = ["Worker"]

log = logging.getLogger("flowstate.worker")


class Worker:
    """Executes the runs of ``graphs`` (name -> compiled graph) queued on ``store``.

    ``concurrency`` runs at once; ``queues`` to claim from; ``lease_ttl`` (default: the
    graphs' own) bounds how long a dead worker's runs wait for another; ``poll`` is the
    longest sleep without a notice; ``drain_timeout`` how long ``stop`` lets held runs
    finish before handing them back; a failed run is retried after ``backoff * 2**n``
    seconds (at most ``max_backoff``) until its ``max_attempts``.
    """

    def __init__(
        self,
        store: Any,
        graphs: Mapping[str, CompiledGraph[Any]],
        *,
        concurrency: int = 4,
        queues: Sequence[str] = ("default",),
        lease_ttl: float | None = None,
        poll: float = 2.0,
        drain_timeout: float = 30.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        listen: bool = True,
    ) -> None:
        if not graphs:
            raise NoWorkerGraphs(repr(graphs))
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency!r}")
        self.store = store
        self.queue = run_queue(store)
        self.graphs: dict[str, CompiledGraph[Any]] = {}
        for name, g in graphs.items():
            bound = g.bind(store)
            if lease_ttl is not None:
                bound.lease_ttl = lease_ttl
            self.graphs[name] = bound
        self.ttl = lease_ttl or min(g.lease_ttl for g in self.graphs.values())
        limits = getattr(store, "session_limits", None)
        if limits is not None:
            # PostgreSQL: a worker frozen inside a transaction (SIGSTOP, a stalled VM) is
            # cut off by the server within half a lease, so its row locks never hold up
            # the takeover of its runs; no statement waits on a lock longer than a lease
            limits(idle_in_transaction=max(1.0, self.ttl / 2), lock_wait=self.ttl)
        self.concurrency = concurrency
        self.queues = list(queues)
        self.poll = poll
        self.drain_timeout = drain_timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.listen = listen
        self.id = new_owner()
        """This worker's name in the ``workers`` table and on the claims it holds:
        ``host:pid:nonce``, like a run's owner, so a claim of a worker whose process is
        gone is known free at once on its own host (``local_owner_alive``)."""
        self.held: dict[str, asyncio.Task[None]] = {}
        """Runs being executed here, by id."""
        self.skipped: set[str] = set()
        """Runs whose recorded graph this worker's code cannot run (left to others)."""
        self.executed = 0
        """Claims executed to an end here (any end)."""
        self.listening = False
        """Whether the LISTEN connection is up (else the loop only polls)."""
        self._stopping = False
        self._wake: asyncio.Event | None = None

    # -- control -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming and drain (idempotent; safe from a signal handler)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and execute until ``stop()``, then drain."""
        self._wake = asyncio.Event()
        graphs = {n: g.fingerprint for n, g in self.graphs.items()}
        self.queue.register(
            self.id, queues=self.queues, graphs=graphs, concurrency=self.concurrency
        )
        log.info("worker %s: graphs %s, queues %s", self.id, sorted(graphs), self.queues)
        helpers = [
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._watch_cancels()),
        ]
        if self.listen:
            helpers.append(asyncio.create_task(self._listen()))
        with contextlib.suppress(StoreIOError):
            self.queue.sweep()
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            for t in helpers:
                t.cancel()
            for t in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            with contextlib.suppress(Exception):
                self.queue.beat(self.id, self.ttl, "stopped", holding=[])
            retire(self.id)
            log.info("worker %s: stopped after %d run(s)", self.id, self.executed)

    async def _claim_loop(self) -> None:
        assert self._wake is not None
        names = list(self.graphs)
        last_sweep = time.monotonic()
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self.held)
            claimed = []
            timeout = self.poll
            try:
                if free <= 0 and len(self.held) < 2 * self.concurrency:
                    # saturated: rescue slots beyond the concurrency (as many again), for
                    # orphans only, so a dead worker's runs are taken over within its
                    # lease, not when slots free somewhere (measured: with one rescue
                    # slot, the 3rd and 4th run of a killed worker waited for capacity)
                    timeout = self._rescue(names, 2 * self.concurrency - len(self.held))
                elif free > 0:
                    claimed = self.queue.claim(
                        self.id,
                        free,
                        queues=self.queues,
                        graphs=names,
                        ttl=self.ttl,
                        exclude=sorted(self.skipped),
                        alive=local_owner_alive,
                    )
                    for c in claimed:
                        self.held[c.run_id] = asyncio.create_task(self._execute(c))
                    if len(claimed) == free:
                        await asyncio.sleep(0)  # let them start; there may be more
                        continue
                    due = self.queue.next_due(
                        queues=self.queues, graphs=names, exclude=sorted(self.skipped)
                    )
                    if due is not None:
                        timeout = min(self.poll, max(0.02, due - time.time() + 0.02))
                if time.monotonic() - last_sweep > 30:
                    last_sweep = time.monotonic()
                    self.queue.sweep()
            except StoreIOError as e:
                log.warning("worker %s: store unavailable, retrying: %s", self.id, e)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _rescue(self, names: list[str], room: int) -> float:
        """Claim up to ``room`` orphans beyond the concurrency; the seconds until the
        next claim (at once after a claim: there may be more)."""
        skipped = sorted(self.skipped)
        claimed = False
        for c in self.queue.claim(
            self.id,
            room,
            queues=self.queues,
            graphs=names,
            ttl=self.ttl,
            exclude=skipped,
            orphans=True,
            alive=local_owner_alive,
        ):
            self.held[c.run_id] = asyncio.create_task(self._execute(c))
            claimed = True
        if claimed:
            return 0.0
        due = self.queue.next_due(queues=self.queues, graphs=names, exclude=skipped, orphans=True)
        return self.poll if due is None else min(self.poll, max(0.02, due - time.time() + 0.02))

    async def _drain(self) -> None:
        if not self.held:
            return
        with contextlib.suppress(Exception):
            self.queue.beat(self.id, self.ttl, "draining", holding=list(self.held))
        log.info("worker %s: draining %d run(s)", self.id, len(self.held))
        await asyncio.wait(list(self.held.values()), timeout=self.drain_timeout)
        for run_id, task in list(self.held.items()):
            if task.done():
                continue
            fence = self.store.fences.get(run_id)
            try:
                if fence is not None:  # nothing of ours commits past this
                    self.queue.release_lease(run_id, fence[0], fence[1])
                self.queue.hand_back(run_id, self.id)
                log.info("worker %s: handed back run %s", self.id, run_id)
            except StoreIOError as e:
                log.warning("worker %s: could not hand back %s: %s", self.id, run_id, e)
            task.cancel()
        if self.held:
            await asyncio.wait(list(self.held.values()), timeout=5)

    # -- one run -----------------------------------------------------------------------

    async def _execute(self, claim: Any) -> None:
        run_id = claim.run_id
        graph = self.graphs[claim.graph]
        try:
            await self._drive(graph, claim)
        except asyncio.CancelledError:
            pass  # handed back by the drain
        except Exception as e:  # store down, corrupt row: counts as an attempt
            log.warning("worker %s: run %s: %s", self.id, run_id, e)
            with contextlib.suppress(Exception):
                self.queue.failed(
                    run_id, self.id, f"{type(e).__name__}: {e}", backoff=self._wait(claim)
                )
        finally:
            self.held.pop(run_id, None)
            self.executed += 1
            self._poke()

    async def _settle(self, op: Any, *args: Any) -> None:
        """A queue write after a run stopped, retried while the store is unavailable (a
        restart, a write lock held long on a loaded machine): left undone, the queue row
        would stay claimed until its claim expired and the sweep removed it."""
        for attempt in range(4):
            try:
                op(*args)
                return
            except StoreIOError as e:
                if attempt == 3:
                    raise
                log.warning("worker %s: %s failed, retrying: %s", self.id, op.__name__, e)
                await asyncio.sleep(0.5 * 2**attempt)

    def _wait(self, claim: Any) -> float:
        return float(min(self.max_backoff, self.backoff * 2 ** max(0, claim.attempts - 1)))

    async def _drive(self, graph: CompiledGraph[Any], claim: Any) -> None:
        run_id = claim.run_id
        log.info(
            "worker %s: run %s (%s, attempt %d/%d%s)",
            self.id,
            run_id,
            claim.graph,
            claim.attempts,
            claim.max_attempts,
            ", taking over" if claim.took_over else "",
        )
        try:
            result = await graph.resume(run_id)
        except GraphMismatch as e:
            # another version of the graph: leave it to a worker that runs that version
            self.skipped.add(run_id)
            self.queue.hand_back(run_id, self.id)
            log.info(
                "worker %s: run %s needs another version of %s: %s", self.id, run_id, claim.graph, e
            )
            return
        except RunOwned:
            self.queue.hand_back(run_id, self.id)  # a process outside the fleet has it
            return
        except LeaseLost as e:
            log.warning("worker %s: lost run %s to another worker: %s", self.id, run_id, e)
            return  # the queue row is the new holder's now
        except CancelledElsewhere:
            graph._cancel_requested.discard(run_id)
            with contextlib.suppress(Exception):
                self.store.clear_signals(run_id)
            await self._settle(self.queue.done, run_id, self.id)
            return
        except NodeFailed as e:
            verdict = self.queue.failed(run_id, self.id, str(e), backoff=self._wait(claim))
            log.info("worker %s: run %s failed (%s)", self.id, run_id, verdict)
            return
        if result.status == "failed":
            self.queue.failed(run_id, self.id, result.reason or "failed", backoff=self._wait(claim))
            return
        await self._settle(self.queue.done, run_id, self.id)
        log.info("worker %s: run %s %s", self.id, run_id, result.status)

    # -- helpers -----------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                self.queue.beat(
                    self.id,
                    self.ttl,
                    "draining" if self._stopping else None,
                    holding=list(self.held),
                )
            except StoreIOError as e:
                log.warning("worker %s: heartbeat failed: %s", self.id, e)

    def _on_notice(self, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        if kind == "work":
            self._poke()
        elif kind == "signal":
            signal, _, run_id = rest.partition(":")
            if signal == "cancel":
                self._cancel_here(run_id)

    def _cancel_here(self, run_id: str) -> None:
        task = self.held.get(run_id)
        if task is None or task.done():
            return
        for g in self.graphs.values():
            inner = g._tasks.get(run_id)
            if inner is not None and not inner.done():
                g._cancel_requested.add(run_id)
                inner.cancel()  # stops its activations now, not at a boundary

    async def _watch_cancels(self) -> None:
        """The fallback for a missed notice (LISTEN down, or not yet up): every ``poll``
        seconds, the cancel requests of the runs held here."""
        while True:
            await asyncio.sleep(self.poll)
            self._check_cancels()

    async def _listen(self) -> None:
        if self.queue.polls:  # SQLite: no NOTIFY
            await self._watch_file()
            return
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        thread = threading.Thread(
            target=self._listen_thread, args=(loop, stop), name="flowstate-listen", daemon=True
        )
        thread.start()
        try:
            await asyncio.Event().wait()  # until cancelled by run()
        finally:
            stop.set()  # the thread closes its connection within half a second

    def _listen_thread(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """``queue.listener()`` (``store.listen(FLEET_CHANNEL)``) in a thread of its own
        (a blocking wait); the notices go to the loop. The listener reconnects by itself;
        a reconnect is a ``missed`` notice, after which the loop re-reads what it waits
        for."""

        def deliver(notices: list[str | None], listening: bool) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._heard, notices, listening)

        ear = None
        try:
            while not stop.is_set():
                if ear is None:
                    try:
                        ear = self.queue.listener()
                    except StoreIOError as e:
                        log.warning("worker %s: cannot LISTEN (%s); polling", self.id, e)
                        deliver([], False)
                        stop.wait(1.0)
                        continue
                    deliver([None], True)  # (re)connected: re-read what may have been missed
                try:
                    notices = ear.wait(0.5)
                except StoreIOError as e:
                    log.warning("worker %s: LISTEN connection lost (%s); polling", self.id, e)
                    ear.close()
                    ear = None
                    deliver([], False)
                    continue
                up = ear.backend_pid is not None
                if notices or up != self.listening:
                    deliver([None if n.missed else n.payload for n in notices], up)
        finally:
            if ear is not None:
                ear.close()

    def _heard(self, payloads: list[str | None], listening: bool) -> None:
        """On the loop: ``payloads`` of notices, None for "some may have been missed"."""
        self.listening = listening
        for payload in payloads:
            if payload is None:  # (re)connected: anything announced meanwhile was lost
                self._poke()
                self._check_cancels()
            else:
                self._on_notice(payload)

    def _check_cancels(self) -> None:
        if not self.held:
            return
        try:
            for run_id in self.queue.cancel_requests(list(self.held)):
                self._cancel_here(run_id)
        except StoreIOError as e:
            log.warning("worker %s: cannot read cancel requests: %s", self.id, e)

    async def _watch_file(self) -> None:
        """SQLite: no NOTIFY, so poll the file's ``data_version`` (moved by another
        process's commit: new work, a cancel) and act on a change as on a notice."""
        self.listening = True
        while True:
            try:
                if self.queue.changed():
                    self._poke()
                    self._check_cancels()
            except StoreIOError as e:
                log.warning("worker %s: cannot poll the database: %s", self.id, e)
            await asyncio.sleep(self.queue.wake_interval)
