"""``CompiledGraph``: run, resume, stream, inspect. One async core, a thin sync shell.

The class is assembled by concept: ``_app_core.GraphCore`` (settings, store, reading runs
back), ``_app_runs.GraphRunner`` (executing runs here: run, resume, stream, cancel) and,
here, the entry points built on them: admission for another process (``admit``,
``enqueue``, ``requeue``, ``admit_fork``, ``admit_turn``), editing and forking history,
replay, threads, due timers, and ``bind``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel

from flowstate.checkpoints import CheckpointStore, RunRecord, StepRecord
from flowstate.observability import run_observer

from ._admission import Admitted
from ._app_runs import GraphRunner
from ._interrupts import UNSET
from ._limits import Limits
from ._results import HistoryEntry, RunResult

if TYPE_CHECKING:
    from ._replay import ReplayReport
    from ._thread_view import Thread, ThreadSummary
    from ._threads import MultitaskStrategy

__all__ = ["CompiledGraph", "HistoryEntry", "RunResult"]

S = TypeVar("S", bound=BaseModel)


class CompiledGraph(GraphRunner[S]):
    """A validated graph bound to a checkpoint store. Create it with ``GraphBuilder.compile``.

    Its collaborators: ``GraphIdentity`` (fingerprint, migrations), ``RunReader``
    (rebuilding states, history) and, per run, an ``Execution`` (the loop).
    """

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

    # -- admission: stored, executed elsewhere -----------------------------------------

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

    # -- history: edit, fork, replay ---------------------------------------------------

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

    # -- threads -----------------------------------------------------------------------

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

    # -- timers ------------------------------------------------------------------------

    async def resume_due(
        self, *, now: float | None = None, on_event: Callable[[Any], None] | None = None
    ) -> list[RunResult[S]]:
        """Resume this graph's runs whose timer (``ctx.sleep``) or interrupt deadline is
        due at ``now`` (default: the clock's time); see ``flowstate.wake_due``."""
        from ._waker import wake_due

        done = await wake_due(self.store, {self.name: self}, now=now, on_event=on_event)
        return cast("list[RunResult[S]]", done)
