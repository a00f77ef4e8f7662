"""``GraphRunner``: executing a graph's runs in this process — start (``run``, ``stream``,
a subgraph's child run), continue (``resume``), and stop (``pause``, ``cancel``). Each
path ends by handing a ``ResumePoint`` to ``_execute`` (``_execute.execute``: the loop
under the run's lease). One async core, a thin sync shell."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel

from flowstate.checkpoints import LeaseStore, RunRecord, StepRecord
from flowstate.errors import RunStateError
from flowstate.observability import run_observer

from ._admission import new_run
from ._app_core import GraphCore
from ._execute import execute
from ._interrupts import UNSET
from ._journal import JournalSource
from ._lease import new_owner, retire
from ._limits import Limits
from ._point import Inherited, Lease, Progress, ResumePoint, RunConfig
from ._results import RunResult
from ._resume import Finished, resume_point
from ._streaming import StreamMode, Subscription

if TYPE_CHECKING:
    from ._threads import MultitaskStrategy

__all__ = ["GraphRunner"]

S = TypeVar("S", bound=BaseModel)


class GraphRunner(GraphCore[S]):
    """A graph that executes its runs here: new runs, their continuations and child runs
    all reach ``_execute``; ``cancel`` reaches the executions of this process."""

    # -- starting ----------------------------------------------------------------------

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

    # -- resume ------------------------------------------------------------------------

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

    def resume_sync(self, run_id: str, value: Any = UNSET, **kwargs: Any) -> RunResult[S]:
        """``resume`` for code that is not async."""
        return asyncio.run(self.resume(run_id, value, **kwargs))

    # -- control -----------------------------------------------------------------------

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
