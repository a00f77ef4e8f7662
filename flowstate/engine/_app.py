"""``CompiledGraph``: run, resume, stream, inspect. One async core, a thin sync shell."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel

from flowstate.checkpoints import (
    CheckpointStore,
    Durability,
    LeaseStore,
    RunRecord,
    StepRecord,
)
from flowstate.errors import (
    RunStateError,
)
from flowstate.observability import run_observer

from ._admission import Admitted, new_run
from ._execute import execute
from ._identity import GraphIdentity
from ._inspect import RunReader
from ._interrupts import UNSET, PendingInterrupt, pending_interrupts
from ._journal import JournalSource
from ._lease import DEFAULT_LEASE_TTL, new_owner, retire
from ._limits import Limits
from ._open import StoreArg, open_store
from ._outcome import Outcome
from ._point import Inherited, Lease, Progress, ResumePoint, RunConfig
from ._results import HistoryEntry, RunResult
from ._resume import Finished, resume_point
from ._streaming import StreamMode, Subscription

if TYPE_CHECKING:
    from ._builder import GraphIR
    from ._memory import MemoryBinding
    from ._replay import ReplayReport
    from ._thread_view import Thread, ThreadSummary
    from ._threads import MultitaskStrategy

__all__ = ["CompiledGraph", "HistoryEntry", "RunResult"]

S = TypeVar("S", bound=BaseModel)


class CompiledGraph(Generic[S]):
    """A validated graph bound to a checkpoint store. Create it with ``GraphBuilder.compile``.

    Its collaborators: ``GraphIdentity`` (fingerprint, migrations), ``RunReader``
    (rebuilding states, history) and, per run, an ``Execution`` (the loop).
    """

    def __init__(
        self,
        ir: GraphIR,
        *,
        store: StoreArg,
        durability: Durability = "normal",
        max_steps: int = 10_000,
        interrupt_before: tuple[str, ...] = (),
        interrupt_after: tuple[str, ...] = (),
        max_concurrency: int | None = None,
        limits: Limits | None = None,
        lease_ttl: float | None = None,
        events: bool = True,
    ) -> None:
        self.ir = ir
        """The compiled graph (nodes, edges, state schema)."""
        self.name = ir.name
        self.identity = GraphIdentity(ir)
        """Fingerprint checks and state-schema migrations of stored runs."""
        self.fingerprint = self.identity.fingerprint
        self.graph_doc = self.identity.graph_doc
        self.lease_ttl = lease_ttl or DEFAULT_LEASE_TTL
        """Seconds a run's lease lasts without a heartbeat (one writer per run)."""
        self.max_concurrency = max_concurrency
        self.limits = limits or Limits()
        self.max_steps = max_steps
        self.interrupt_before = interrupt_before
        self.interrupt_after = interrupt_after
        self.events = events
        """Whether runs keep their events in the store (``compile(events=...)``)."""
        self.services: dict[str, Any] = {}
        """Objects nodes reach through ``ctx.services`` (an LLM, tools, memory)."""
        self.rng: random.Random | None = None
        """Seeded RNG for retry jitter (tests)."""
        self._store_arg = store
        self._durability: Durability = durability
        self._store: CheckpointStore | None = (
            None if store is None or isinstance(store, str | os.PathLike) else store
        )
        self._reader: RunReader | None = None
        self._memory: MemoryBinding | None = None
        self._tasks: dict[str, asyncio.Future[Outcome]] = {}
        """Executions running in this process, by run id (``cancel`` reaches them)."""
        self._cancel_requested: set[str] = set()

    @property
    def state_model(self) -> type[S]:
        return cast("type[S]", self.ir.schema.model)

    @property
    def store(self) -> CheckpointStore:
        """The checkpoint store (opened on first use)."""
        if self._store is None:
            self._store = open_store(self._store_arg, self._durability)
        return self._store

    @property
    def store_spec(self) -> Any:
        """What ``compile(store=...)`` named (a path, URL or store object), or None when the
        graph uses the default store ($FLOWSTATE_DB or ./flowstate.db)."""
        return self._store_arg if self._store_arg is not None else self._store

    @property
    def has_store(self) -> bool:
        """Whether ``compile`` was given a store (a path, URL or store object)."""
        return self._store is not None or self._store_arg is not None

    @property
    def reader(self) -> RunReader:
        """Reads this graph's runs back from its store."""
        if self._reader is None or self._reader.store is not self.store:
            self._reader = RunReader(self.ir, self.identity, self.store)
        return self._reader

    def _memory_binding(self) -> MemoryBinding:
        if self._memory is None:
            from ._memory import MemoryBinding

            self._memory = MemoryBinding(self.store)
        return self._memory

    def memory_store(self) -> Any:
        """The MemoryStore over this graph's checkpoint database (to inspect memories)."""
        return self._memory_binding().reader

    def bind(self, store: CheckpointStore) -> CompiledGraph[S]:
        """The same graph (settings, services) on another store: subgraphs run on their
        parent's store, a service binds every graph it serves to its own."""
        if self._store is store:
            return self
        clone = CompiledGraph[S](
            self.ir,
            store=store,
            max_steps=self.max_steps,
            interrupt_before=self.interrupt_before,
            interrupt_after=self.interrupt_after,
            max_concurrency=self.max_concurrency,
            limits=self.limits,
            lease_ttl=self.lease_ttl,
            events=self.events,
        )
        clone.services = self.services
        clone.rng = self.rng
        return clone

    def check_graph(self, run: RunRecord, allow_graph_change: bool = False) -> None:
        """Raise ``GraphMismatch`` (with a diff) when ``run`` was recorded with another
        graph that migrations do not cover."""
        self.identity.check(run, allow_graph_change)

    # -- running -----------------------------------------------------------------------

    def _config(
        self,
        *,
        max_steps: int | None = None,
        interrupt_before: Sequence[str] | None = None,
        interrupt_after: Sequence[str] | None = None,
        max_concurrency: int | None = None,
        limits: Limits | None = None,
    ) -> RunConfig:
        return RunConfig(
            max_steps=max_steps if max_steps is not None else self.max_steps,
            limits=limits or self.limits,
            interrupt_before=tuple(
                interrupt_before if interrupt_before is not None else self.interrupt_before
            ),
            interrupt_after=tuple(
                interrupt_after if interrupt_after is not None else self.interrupt_after
            ),
            max_concurrency=max_concurrency or self.max_concurrency,
        )

    async def run(
        self,
        input: S | dict[str, Any],
        *,
        run_id: str | None = None,
        max_steps: int | None = None,
        interrupt_before: Sequence[str] | None = None,
        interrupt_after: Sequence[str] | None = None,
        max_concurrency: int | None = None,
        limits: Limits | None = None,
        on_event: Callable[[Any], None] | None = None,
        thread_id: str | None = None,
        multitask_strategy: MultitaskStrategy = "reject",
    ) -> RunResult[S]:
        """Run the graph from ``input`` to END (or a pause). Checkpoints every activation.

        ``max_concurrency`` bounds how many activations of a step run at once.
        With ``thread_id`` the run is the next turn of that thread (a conversation): it
        starts from the last turn's final state with ``input`` applied through the
        reducers; ``multitask_strategy`` says what happens while the last turn is
        unfinished (``reject``, ``enqueue``, ``interrupt``; docs: guides/threads).
        """
        config = self._config(
            max_steps=max_steps,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            max_concurrency=max_concurrency,
            limits=limits,
        )
        if thread_id is not None:
            from ._threads import run_turn

            return await run_turn(
                self,
                input,
                thread_id=thread_id,
                strategy=multitask_strategy,
                run_id=run_id,
                config=config,
                emit=on_event,
            )
        return await self._start(input, run_id=run_id, emit=on_event, config=config)

    def admit(
        self,
        input: S | dict[str, Any],
        *,
        run_id: str | None = None,
        max_steps: int | None = None,
        interrupt_before: Sequence[str] | None = None,
        interrupt_after: Sequence[str] | None = None,
        max_concurrency: int | None = None,
        limits: Limits | None = None,
    ) -> tuple[RunRecord, StepRecord]:
        """The run row and step-0 row ``run()`` would create for ``input`` (same checks,
        configuration and first step), with status ``queued`` (``completed`` when START
        leads nowhere), without storing or executing anything. Store them with
        ``store.create_run(run, step0)``; ``resume(run_id)`` then executes the run, in
        any process."""
        config = self._config(
            max_steps=max_steps,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            max_concurrency=max_concurrency,
            limits=limits,
        )
        run, step0, _ = self._new_run(input, run_id=run_id, config=config)
        obs = run_observer(
            run_id=run.id,
            graph=self.name,
            kind="start",
            stored=config.trace,
            subgraph=False,
            step=0,
            limits=config.limits.model_dump(),
        )
        if obs is not None:
            if obs.traceparent:  # the execution, in any process, continues this trace
                config = replace(config, trace={"traceparent": obs.traceparent})
                run = run.model_copy(update={"config": config.to_json()})
            obs.close(Admitted(run.id))  # its span ends as "not started", not as an error
        if run.status == "running":
            run = run.model_copy(update={"status": "queued"})
        return run, step0

    def enqueue(
        self,
        input: S | dict[str, Any],
        *,
        queue: str = "default",
        run_id: str | None = None,
        max_attempts: int = 3,
        priority: int = 0,
        delay: float = 0.0,
        max_steps: int | None = None,
        limits: Limits | None = None,
    ) -> RunRecord:
        """Store a new run ``queued`` for a fleet worker (``flowstate worker``) instead of
        executing it here: same checks and first step as ``run``. Higher ``priority`` is
        claimed first; ``delay`` seconds postpone it. After ``max_attempts`` claims that
        ended with its worker dead or the run failed, it is dead-lettered (status
        ``dead``). Needs a store with a run queue (PostgreSQL, or an SQLite file shared by
        the processes of one machine): else ``QueueUnavailable``."""
        from ._enqueue import enqueue_new

        admit = {"run_id": run_id, "max_steps": max_steps, "limits": limits}
        return enqueue_new(
            self,
            input,
            queue=queue,
            max_attempts=max_attempts,
            priority=priority,
            delay=delay,
            admit=admit,
        )

    def requeue(
        self,
        run_id: str,
        value: Any = UNSET,
        *,
        answers: Mapping[str, Any] | None = None,
        queue: str = "default",
        max_attempts: int = 3,
    ) -> RunRecord:
        """``resume`` through the fleet: record the answers (as ``resume`` would) and put
        the run back on the queue, attempts reset (a paused, failed, cancelled or dead
        run); a worker continues it from its last commit."""
        from ._enqueue import enqueue_existing

        return enqueue_existing(
            self, run_id, value=value, answers=answers, queue=queue, max_attempts=max_attempts
        )

    def _new_run(
        self,
        input: S | dict[str, Any],
        *,
        run_id: str | None,
        config: RunConfig,
        parent: str | None = None,
        parent_step: int | None = None,
    ) -> tuple[RunRecord, StepRecord, BaseModel]:
        return new_run(
            self, input, run_id=run_id, config=config, parent=parent, parent_step=parent_step
        )

    async def _start(
        self,
        input: S | dict[str, Any],
        *,
        run_id: str | None = None,
        parent: str | None = None,
        parent_step: int | None = None,
        emit: Callable[[Any], None] | None = None,
        config: RunConfig | None = None,
        journal: JournalSource | None = None,
    ) -> RunResult[S]:
        config = config or self._config(interrupt_before=(), interrupt_after=())
        run, step0, state = self._new_run(
            input, run_id=run_id, config=config, parent=parent, parent_step=parent_step
        )
        return await self._launch(run, step0, state, config, emit, journal)

    async def _launch(
        self,
        run: RunRecord,
        step0: StepRecord,
        state: BaseModel,
        config: RunConfig,
        emit: Callable[[Any], None] | None,
        journal: JournalSource | None = None,
    ) -> RunResult[S]:
        """Store a new run's rows (holding its lease) and execute it."""
        parent = run.parent_id
        obs = run_observer(
            run_id=run.id,
            graph=self.name,
            kind="replay" if journal is not None and journal.strict else "start",
            stored=config.trace,
            subgraph=parent is not None,
            step=0,
            limits=config.limits.model_dump(),
        )
        if obs is not None and obs.traceparent:
            # stored with the run, so a resume in any process continues this trace
            config = replace(config, trace={"traceparent": obs.traceparent})
            run = run.model_copy(update={"config": config.to_json()})
        store = self.store
        lease: Lease | None = None
        try:
            if isinstance(store, LeaseStore):
                lease = Lease(new_owner(), 1)
                store.create_run(run, step0, owner=lease.owner, ttl=self.lease_ttl)
            else:
                store.create_run(run, step0)
        except BaseException as e:
            if lease is not None:
                retire(lease.owner)
            if obs is not None:
                obs.close(e)
            raise
        point = ResumePoint(
            run=run,
            step=step0,
            state=state,
            config=config,
            progress=Progress(last_snapshot_bytes=len(step0.snapshot or run.input)),
            journal=journal,
            lease=lease,
            observer=obs,
        )
        return await self._execute(point, emit)

    async def start_child(
        self,
        input: dict[str, Any],
        *,
        run_id: str,
        parent: str,
        parent_step: int,
        emit: Callable[[Any], None],
        journal: JournalSource | None,
        config: RunConfig,
    ) -> RunResult[S]:
        """Start the child run of a subgraph activation (engine use)."""
        return await self._start(
            input,
            run_id=run_id,
            parent=parent,
            parent_step=parent_step,
            emit=emit,
            journal=journal,
            config=config,
        )

    async def continue_child(
        self,
        run_id: str,
        *,
        emit: Callable[[Any], None],
        journal: JournalSource | None,
        inherit: Inherited,
    ) -> RunResult[S]:
        """Continue the child run of a subgraph activation (engine use); answers to its
        interrupts were stored in it by id."""
        return await self._continue(run_id, emit=emit, journal=journal, inherit=inherit)

    async def _execute(
        self, point: ResumePoint, emit: Callable[[Any], None] | None
    ) -> RunResult[S]:
        """Drive ``point`` to its end, holding its lease (with a heartbeat) meanwhile."""
        return cast("RunResult[S]", await execute(self, point, emit))

    def run_sync(self, input: S | dict[str, Any], **kwargs: Any) -> RunResult[S]:
        """``run`` for code that is not async."""
        return asyncio.run(self.run(input, **kwargs))

    async def stream(
        self,
        input: S | dict[str, Any],
        *,
        mode: StreamMode | Sequence[StreamMode] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """Run and yield typed events (``flowstate.events``) as they happen. ``mode``
        selects them (LangGraph's ``stream_mode``): ``"values"`` (``step_finished`` with
        the state after the step), ``"updates"`` (``node_finished``), ``"tokens"``,
        ``"events"`` (all, the default); a list combines them."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()
        sink: Callable[[Any], None] = queue.put_nowait
        if mode is not None:
            sink = Subscription(sink, mode)

        async def go() -> None:
            try:
                await self.run(input, on_event=sink, **kwargs)
            finally:
                queue.put_nowait(done)

        task = asyncio.create_task(go())
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                yield item
            await task
        finally:
            if not task.done():
                task.cancel()

    # -- resume ---------------------------------------------------------------------------

    async def resume(
        self,
        run_id: str,
        value: Any = UNSET,
        *,
        answers: Mapping[str, Any] | None = None,
        update: Mapping[str, Any] | None = None,
        goto: str | Sequence[str] | None = None,
        rerun_step: bool = False,
        allow_graph_change: bool = False,
        max_steps: int | None = None,
        limits: Limits | None = None,
        wait: float | None = None,
        on_event: Callable[[Any], None] | None = None,
    ) -> RunResult[S]:
        """Continue a crashed, failed, paused or cancelled run from its last commit.

        Committed activations never run again. ``value`` answers the one pending interrupt
        (``None`` is an answer too); with several pending it is refused, listing their
        ids, and ``answers={id: value, ...}`` answers any subset of them by id (the rest
        stay pending and ask again). ``RunResult.interrupts`` and ``pending_interrupts``
        list the ids. A run that another live process is executing is refused with
        ``RunOwned``, or waited for up to ``wait`` seconds.

        ``update`` edits the state first (as ``update_state`` does, recorded and replayed),
        and ``goto`` (a node or a list) replaces the head step's pending activations with
        those nodes: LangGraph's ``Command(resume=..., update=..., goto=...)``.

        ``rerun_step=True`` runs the head step's activations again, committed ones
        included (after fixing a node whose committed update made the step's close fail,
        see ``StepCloseFailed``): their writes are superseded, kept as ``attempts`` rows
        with a negative attempt number; journaled effects follow the usual rules.
        """
        return await self._continue(
            run_id,
            value=value,
            answers=answers,
            update=update,
            goto=[goto] if isinstance(goto, str) else list(goto or ()),
            rerun_step=rerun_step,
            allow_graph_change=allow_graph_change,
            max_steps=max_steps,
            limits=limits,
            wait=wait,
            emit=on_event,
        )

    async def _continue(
        self,
        run_id: str,
        *,
        value: Any = UNSET,
        answers: Mapping[str, Any] | None = None,
        update: Mapping[str, Any] | None = None,
        goto: Sequence[str] = (),
        rerun_step: bool = False,
        allow_graph_change: bool = False,
        max_steps: int | None = None,
        limits: Limits | None = None,
        emit: Callable[[Any], None] | None = None,
        journal: JournalSource | None = None,
        wait: float | None = None,
        inherit: Inherited | None = None,
        due: float | None = None,
    ) -> RunResult[S]:
        from ._threads import prepare_turn

        await prepare_turn(self, run_id)  # a queued turn of a thread: its start state
        point = await resume_point(
            self.store,
            self.identity,
            self.reader,
            run_id,
            defaults=self._config(),
            lease_ttl=self.lease_ttl,
            value=value,
            answers=answers,
            update=update,
            goto=goto,
            rerun_step=rerun_step,
            allow_graph_change=allow_graph_change,
            max_steps=max_steps,
            limits=limits,
            journal=journal,
            wait=wait,
            inherit=inherit,
            due=due,
        )
        if isinstance(point, Finished):
            return RunResult(
                run_id=run_id, status="completed", state=cast("S", point.state), step=point.step
            )
        return await self._execute(point, emit)

    async def resume_due(
        self, *, now: float | None = None, on_event: Callable[[Any], None] | None = None
    ) -> list[RunResult[S]]:
        """Resume this graph's runs whose timer (``ctx.sleep``) or interrupt deadline is
        due at ``now`` (default: the clock's time); see ``flowstate.wake_due``."""
        from ._waker import wake_due

        done = await wake_due(self.store, {self.name: self}, now=now, on_event=on_event)
        return cast("list[RunResult[S]]", done)

    def pending_interrupts(self, run_id: str) -> list[PendingInterrupt]:
        """The run's pending interrupts (its subgraphs' included), in task order, each
        with the stable id that ``resume(run_id, answers={id: value})`` takes."""
        self.store.get_run(run_id)
        return pending_interrupts(self.store, run_id)

    def resume_sync(self, run_id: str, value: Any = UNSET, **kwargs: Any) -> RunResult[S]:
        """``resume`` for code that is not async."""
        return asyncio.run(self.resume(run_id, value, **kwargs))

    async def replay(
        self,
        run_id: str,
        *,
        raise_on_divergence: bool = True,
        allow_graph_change: bool = False,
    ) -> ReplayReport:
        """Re-execute a recorded run offline and compare every update with the recording.

        Every effect (LLM, tool, network) is served from the journal; nothing is performed
        live. Returns a ReplayReport; raises ReplayDivergence on the first difference unless
        ``raise_on_divergence=False``.
        """
        from ._replay import replay

        return await replay(
            self,
            run_id,
            raise_on_divergence=raise_on_divergence,
            allow_graph_change=allow_graph_change,
        )

    async def replay_many(self, run_ids: Sequence[str]) -> list[ReplayReport]:
        """Replay several runs; never raises on divergence, returns every report."""
        return [await self.replay(r, raise_on_divergence=False) for r in run_ids]

    async def fork(
        self,
        run_id: str,
        *,
        at: int,
        update: dict[str, Any] | None = None,
        reuse_effects: bool = False,
        new_run_id: str | None = None,
        on_event: Callable[[Any], None] | None = None,
    ) -> RunResult[S]:
        """Start a new run from the state at the start of step ``at``, patched with
        ``update``, linked to its parent. With ``reuse_effects``, effects whose requests
        match the parent's journal are served from it instead of being performed again."""
        from ._replay import fork

        return await fork(
            self,
            run_id,
            at=at,
            update=update,
            reuse_effects=reuse_effects,
            new_run_id=new_run_id,
            on_event=on_event,
        )

    # -- inspection -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        """The run's row (status, head step, error, ...)."""
        return self.store.get_run(run_id)

    def get_state(self, run_id: str) -> S:
        """The run's current state (after its last closed step)."""
        return cast("S", self.reader.get_state(run_id))

    def state_at(self, run_id: str, step: int) -> S:
        """The state at the start of ``step`` (step 0 is the input)."""
        return cast("S", self.reader.state_at(run_id, step))

    def update_state(
        self,
        run_id: str,
        values: Mapping[str, Any] | BaseModel,
        as_node: str | None = None,
        *,
        by: str | None = None,
        goto: str | Sequence[str] | None = None,
    ) -> RunRecord:
        """Edit a stopped run's state in place (paused, failed, cancelled, crashed or
        completed): ``values`` is validated like a node's update and merged through the
        reducers, recorded as its own history entry (``by`` names who made it), and
        replayed as a recorded input. The head step's pending activations then read the
        edited state. With ``as_node`` the edit counts as that node's write: the step is
        planned again from its outgoing edges (a completed run whose edges lead somewhere
        becomes ``paused``, resumable). A run being executed is refused
        (``EditWhileRunning``). ``goto`` (a node or a list) replaces the pending
        activations with those nodes, as ``resume(goto=...)`` does. Returns the run's row."""
        from ._edit import update_state

        targets = [goto] if isinstance(goto, str) else list(goto or ())
        return update_state(self, run_id, values, as_node=as_node, by=by, goto=targets)

    def history(self, run_id: str, *, nested: bool = True) -> list[HistoryEntry]:
        """Every committed activation of the run, in order. With ``nested`` (default),
        the activations of subgraph child runs follow the parent activation that ran
        them, with ``run_id`` set to the child run and ``depth`` to its nesting level."""
        return self.reader.history(run_id, nested=nested)

    def admit_fork(
        self,
        run_id: str,
        *,
        at: int,
        update: dict[str, Any] | None = None,
        new_run_id: str | None = None,
    ) -> RunRecord:
        """Store a fork of ``run_id`` at step ``at`` (patched with ``update``) with status
        ``queued``, without executing it: ``resume(new_id)`` runs it, as ``fork`` would
        (``completed`` when the step planned nothing). For a service that admits durably
        before it has an execution slot."""
        from ._replay import fork_rows

        run, step0, _ = fork_rows(
            self, run_id, at=at, update=update, new_run_id=new_run_id, status="queued"
        )
        self.store.create_run(run, step0)
        return run

    # -- threads ----------------------------------------------------------------------------

    def threads(self, *, limit: int = 100, before: float | None = None) -> list[ThreadSummary]:
        """Threads in the store, latest activity first (guides/threads)."""
        from ._thread_view import list_threads

        return list_threads(self, limit, before)

    def thread(self, thread_id: str) -> Thread:
        """A thread and its turns (runs), by turn; ``ThreadNotFound`` when there is none.
        ``get_state(thread.last.run_id)`` is the conversation's state now."""
        from ._thread_view import get_thread

        return get_thread(self, thread_id)

    def thread_history(self, thread_id: str) -> list[HistoryEntry]:
        """Every committed activation of every turn of the thread, turn after turn (each
        entry's ``run_id`` names its turn); queued turns have none yet."""
        return [
            e
            for t in self.thread(thread_id).turns
            if t.status != "queued"
            for e in self.history(t.run_id)
        ]

    def admit_turn(
        self,
        input: S | dict[str, Any],
        *,
        thread_id: str,
        multitask_strategy: MultitaskStrategy = "reject",
        run_id: str | None = None,
        max_steps: int | None = None,
    ) -> RunRecord:
        """Store the next turn of ``thread_id`` as ``queued`` without executing it: a
        service admits durably, then ``wait_turn`` and ``resume`` start it in any
        process. ``multitask_strategy`` applies as in ``run``."""
        from ._threads import admit_turn

        config = self._config(max_steps=max_steps)
        return admit_turn(
            self,
            input,
            thread_id=thread_id,
            strategy=multitask_strategy,
            run_id=run_id,
            config=config,
        )

    async def wait_turn(self, run_id: str, timeout: float | None = None) -> bool:
        """Wait until queued turn ``run_id`` can start: True; False when a turn ahead is
        paused, failed or crashed (it starts after that turn ends) or on ``timeout``."""
        from ._threads import wait_turn

        return await wait_turn(self, run_id, timeout)

    def to_mermaid(self) -> str:
        from ._render import to_mermaid

        return to_mermaid(self.ir)

    # -- control ----------------------------------------------------------------------------

    def pause(self, run_id: str) -> None:
        """Ask a running run (in any process) to stop at its next node boundary."""
        self.store.get_run(run_id)
        self.store.send_signal(run_id, "pause")

    def cancel(self, run_id: str) -> None:
        """Cancel a run: in this process its activations are cancelled at once; in another
        process it stops at its next node boundary or effect."""
        run = self.store.get_run(run_id)
        if run.status == "completed":
            raise RunStateError(f"run {run_id} is completed; there is nothing to cancel")
        task = self._tasks.get(run_id)
        if task is not None and not task.done():
            self._cancel_requested.add(run_id)
            task.cancel()
            return
        # Not running here: a live process elsewhere sees the signal at its next node
        # boundary or effect; if none is alive, the status alone is the cancel, and crash
        # recovery (which resumes only `running` runs) will not pick the run up again.
        self.store.send_signal(run_id, "cancel")
        self.store.update_run(run_id, status="cancelled", error="cancelled")
