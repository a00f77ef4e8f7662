"""``CompiledGraph``: run, resume, stream, inspect. One async core, a thin sync shell."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from flowstate.checkpoints import (
    Durability,
    RunRecord,
    SQLiteStore,
    StepRecord,
)
from flowstate.errors import (
    InputRejected,
    LeaseLost,
    PayloadTooLarge,
    RunStateError,
)
from flowstate.observability import RunObserver, observe_events, run_observer, run_scope

from . import _events as ev
from ._identity import IdentityMixin
from ._inspect import InspectMixin
from ._interrupts import UNSET, PendingInterrupt, pending_interrupts
from ._lease import DEFAULT_LEASE_TTL, Heartbeat, new_owner, retire
from ._limits import Limits
from ._plan import start_tasks
from ._results import HistoryEntry, RunResult
from ._resume import ResumeMixin
from ._rows import parse
from ._scheduler import Committed, Execution, JournalSource, Outcome

if TYPE_CHECKING:
    from ._builder import GraphIR
    from ._replay import ReplayReport

__all__ = ["CompiledGraph", "HistoryEntry", "RunResult"]

S = TypeVar("S", bound=BaseModel)

DEFAULT_DB = "flowstate.db"


def _open_store(store: Any, durability: Durability) -> Any:
    """A path or ``:memory:`` opens an SQLite store, a ``postgresql://`` URL a Postgres
    store, ``memory://`` an ``InMemoryStore`` (no persistence); any other object with the
    store interface is used as it is."""
    if store is None:
        store = os.environ.get("FLOWSTATE_DB", DEFAULT_DB)
    if isinstance(store, str) and store == "memory://":
        from flowstate.checkpoints import InMemoryStore

        return InMemoryStore()
    if isinstance(store, str) and store.startswith(("postgresql://", "postgres://")):
        from flowstate.checkpoints._postgres import PostgresStore

        return PostgresStore(store)
    if isinstance(store, str | os.PathLike):
        return SQLiteStore(store, durability=durability)
    return store


def _unknown_fields(model: type[BaseModel], input: Any) -> list[str]:
    """Keys of a mapping input that name no field (nor alias) of ``model``: pydantic would
    drop them silently, so a typo would go unnoticed. A model that allows extra fields
    takes them."""
    if not isinstance(input, Mapping) or model.model_config.get("extra") == "allow":
        return []
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    return [str(k) for k in input if k not in names]


class CompiledGraph(IdentityMixin, InspectMixin[S], ResumeMixin[S], Generic[S]):
    """A validated graph bound to a checkpoint store. Create it with ``GraphBuilder.compile``."""

    def __init__(
        self,
        ir: GraphIR,
        *,
        store: str | SQLiteStore | None,
        durability: Durability = "normal",
        max_steps: int = 10_000,
        interrupt_before: tuple[str, ...] = (),
        interrupt_after: tuple[str, ...] = (),
        max_concurrency: int | None = None,
        limits: Limits | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        self.ir = ir
        self.lease_ttl = lease_ttl or DEFAULT_LEASE_TTL
        """Seconds a run's lease lasts without a heartbeat (one writer per run)."""
        self.max_concurrency = max_concurrency
        self.limits = limits or Limits()
        self.name = ir.name
        self._store_arg = store
        self._durability: Durability = durability
        self._store: Any = None if store is None or isinstance(store, str | os.PathLike) else store
        self.max_steps = max_steps
        self.interrupt_before = interrupt_before
        self.interrupt_after = interrupt_after
        self.fingerprint, self.graph_doc = ir.fingerprint()
        self.services: dict[str, Any] = {}
        """Objects nodes reach through ``ctx.services`` (an LLM, tools, memory)."""
        self._tasks: dict[str, asyncio.Future[Any]] = {}
        self._cancel_requested: set[str] = set()
        self._chains: dict[str, list[Callable[..., Any]]] = {}
        self._memory: Any = None
        self.rng: random.Random | None = None
        """Seeded RNG for retry jitter (tests)."""

    @property
    def state_model(self) -> type[S]:
        return self.ir.schema.model  # type: ignore[return-value]

    @property
    def store_spec(self) -> Any:
        """What ``compile(store=...)`` named (a path, URL or store object), or None when the
        graph uses the default store ($FLOWSTATE_DB or ./flowstate.db)."""
        return self._store_arg if self._store_arg is not None else self._store

    @property
    def store(self) -> SQLiteStore:
        if self._store is None:
            self._store = _open_store(self._store_arg, self._durability)
        return self._store

    def _memory_binding(self) -> Any:
        if self._memory is None:
            from ._memory import MemoryBinding

            self._memory = MemoryBinding(self.store)
        return self._memory

    def memory_store(self) -> Any:
        """The MemoryStore over this graph's checkpoint database (to inspect memories)."""
        return self._memory_binding().reader

    def _bind(self, store: SQLiteStore) -> CompiledGraph[S]:
        """The same graph on another store (subgraphs run on their parent's store)."""
        if self._store is store:
            return self
        clone = CompiledGraph(
            self.ir,
            store=store,
            max_steps=self.max_steps,
            interrupt_before=self.interrupt_before,
            interrupt_after=self.interrupt_after,
            max_concurrency=self.max_concurrency,
            limits=self.limits,
            lease_ttl=self.lease_ttl,
        )
        clone.services = self.services
        clone.rng = self.rng
        return clone

    # -- running -----------------------------------------------------------------------

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
    ) -> RunResult[S]:
        """Run the graph from ``input`` to END (or a pause). Checkpoints every activation.

        ``max_concurrency`` bounds how many activations of a step run at once.
        """
        config = {
            "max_concurrency": max_concurrency or self.max_concurrency,
            "limits": (limits or self.limits).model_dump(),
            "max_steps": max_steps if max_steps is not None else self.max_steps,
            "interrupt_before": list(
                interrupt_before if interrupt_before is not None else self.interrupt_before
            ),
            "interrupt_after": list(
                interrupt_after if interrupt_after is not None else self.interrupt_after
            ),
        }
        return await self._start(input, run_id=run_id, emit=on_event, config=config)

    def run_sync(self, input: S | dict[str, Any], **kwargs: Any) -> RunResult[S]:
        """``run`` for code that is not async."""
        return asyncio.run(self.run(input, **kwargs))

    async def _start(
        self,
        input: S | dict[str, Any],
        *,
        run_id: str | None = None,
        parent: str | None = None,
        parent_step: int | None = None,
        emit: Callable[[Any], None] | None = None,
        config: dict[str, Any] | None = None,
        journal: JournalSource | None = None,
    ) -> RunResult[S]:
        schema = self.ir.schema
        unknown = _unknown_fields(schema.model, input)
        if unknown:
            known = ", ".join(schema.model.model_fields)
            raise InputRejected(
                f"the input has field{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(u) for u in unknown)}, which {schema.name} does not have "
                f"(its fields: {known}); fix the name or add the field to the state; no run "
                "was created"
            )
        try:
            state = input if isinstance(input, schema.model) else schema.model.model_validate(input)
        except ValidationError as e:
            from ._state import _describe_errors

            raise InputRejected(
                f"the input does not fit {schema.name}: {_describe_errors(e)}; no run was created"
            ) from None
        run_id = run_id or uuid.uuid4().hex[:16]
        config = config or {
            "limits": self.limits.model_dump(),
            "max_steps": self.max_steps,
            "interrupt_before": [],
            "interrupt_after": [],
        }
        tasks = start_tasks(self.ir, state)
        now = time.time()
        input_json = schema.dump_state(state)
        max_state = int(
            config.get("limits", {}).get("max_state_bytes", self.limits.max_state_bytes)
        )
        if len(input_json) > max_state:
            raise PayloadTooLarge("the input state", len(input_json), max_state, "max_state_bytes")
        obs = run_observer(
            run_id=run_id,
            graph=self.name,
            kind="replay" if journal is not None and journal.strict else "start",
            stored=config.get("trace"),
            subgraph=parent is not None,
            step=0,
            limits=config.get("limits"),
        )
        if obs is not None and obs.traceparent:
            # stored with the run, so a resume in any process continues this trace
            config = {**config, "trace": {"traceparent": obs.traceparent}}
        run = RunRecord(
            id=run_id,
            graph=self.name,
            fingerprint=self.fingerprint,
            graph_doc=self.graph_doc,
            status="running",
            input=input_json,
            head_step=0,
            parent_id=parent,
            parent_step=parent_step,
            config=json.dumps(config),
            created_at=now,
            updated_at=now,
        )
        step0 = StepRecord(
            run_id=run_id,
            step=0,
            tasks=json.dumps([t.to_json() for t in tasks]),
            joins="{}",
            snapshot=input_json,
            created_at=now,
        )
        if not tasks:
            run = run.model_copy(update={"status": "completed"})
        owner = new_owner()
        try:
            if hasattr(self.store, "acquire"):
                self.store.create_run(run, step0, owner=owner, ttl=self.lease_ttl)
            else:
                self.store.create_run(run, step0)
        except BaseException as e:
            retire(owner)
            if obs is not None:
                obs.close(e)
            raise
        return await self._execute(
            run,
            step0,
            state,
            {},
            emit,
            resumed=False,
            last_snapshot_bytes=len(input_json),
            journal=journal,
            lease=(owner, 1),
            observer=obs,
        )

    async def _execute(
        self,
        run: RunRecord,
        step: StepRecord,
        state: BaseModel,
        committed: dict[str, Committed],
        emit: Callable[[Any], None] | None,
        *,
        resumed: bool,
        activations: int = 0,
        visits: dict[str, int] | None = None,
        bytes_since: int = 0,
        steps_since: int = 0,
        last_snapshot_bytes: int = 0,
        config_override: dict[str, Any] | None = None,
        journal: JournalSource | None = None,
        tokens: tuple[int, int] = (0, 0),
        lease: tuple[str, int] | None = None,
        observer: RunObserver | None = None,
        took_over: bool = False,
    ) -> RunResult[S]:
        config = {**parse("config", run.config, "runs", run.id, None), **(config_override or {})}
        # a subgraph's child run counts the tokens its run tree had used before it
        base = config.get("token_base") or [0, 0]
        tokens = (tokens[0] + int(base[0]), tokens[1] + int(base[1]))
        obs = observer
        if obs is None and resumed:
            obs = run_observer(
                run_id=run.id,
                graph=self.name,
                kind="resume",
                stored=config.get("trace"),
                subgraph=run.parent_id is not None and run.id.startswith(run.parent_id + "/"),
                step=step.step,
                limits=config.get("limits"),
                took_over=took_over,
            )
        sink = observe_events(emit or (lambda e: None), obs, run.id)
        exe = Execution(
            self,
            self.store,
            run,
            step=step,
            state=state,
            committed=committed,
            emit=sink,
            max_steps=int(config.get("max_steps", self.max_steps)),
            activations=activations,
            visits=visits or {},
            interrupt_before=tuple(config.get("interrupt_before", ())),
            interrupt_after=tuple(config.get("interrupt_after", ())),
            journal=journal,
            bytes_since_snapshot=bytes_since,
            steps_since_snapshot=steps_since,
            last_snapshot_bytes=last_snapshot_bytes,
            rng=self.rng,
            listening=emit is not None or obs is not None,
            max_concurrency=config.get("max_concurrency"),
            limits=Limits(**config["limits"]) if "limits" in config else self.limits,
            tokens=tokens,
        )
        exe.token_base = (int(base[0]), int(base[1]))
        exe.observer = obs
        if resumed:
            exe.resumed_step = step.step
        sink(ev.RunStarted(run_id=run.id, graph=self.name, resumed=resumed, step=step.step))
        inner = asyncio.ensure_future(run_scope(exe.drive(), run.id, obs))
        self._tasks[run.id] = inner
        beat: Heartbeat | None = None
        if lease is not None and hasattr(self.store, "heartbeat"):
            beat = Heartbeat(self.store, run.id, lease[0], lease[1], self.lease_ttl, inner)
            beat.start()
        try:
            outcome = await asyncio.shield(inner)
        except asyncio.CancelledError:
            if beat is not None and beat.lost:
                raise LeaseLost(run.id, lease[1] if lease else 0, "its heartbeat failed") from None
            # Either app.cancel() cancelled the run, or our caller's task was cancelled.
            if not inner.done():
                inner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await inner
            self.store.update_run(run.id, status="cancelled", error="cancelled", head_step=exe.step)
            sink(ev.RunFinished(run_id=run.id, status="cancelled", reason="cancelled"))
            if run.id in self._cancel_requested:
                self._cancel_requested.discard(run.id)
                return RunResult(
                    run_id=run.id,
                    status="cancelled",
                    state=exe.state,  # type: ignore[arg-type]
                    reason="cancelled",
                    step=exe.step,
                )
            raise
        except BaseException as e:
            if obs is not None:
                obs.close(e)
            raise
        finally:
            if obs is not None:
                obs.close()
            self._tasks.pop(run.id, None)
            if lease is not None:
                retire(lease[0])
            if beat is not None:
                beat.stop()
            if lease is not None and hasattr(self.store, "release"):
                with contextlib.suppress(Exception):
                    self.store.release(run.id, lease[0], lease[1])
        return self._result(run.id, outcome)

    def _result(self, run_id: str, o: Outcome) -> RunResult[S]:
        return RunResult(
            run_id=run_id,
            status=o.status,
            state=o.state,  # type: ignore[arg-type]
            reason=o.reason,
            step=o.step,
            interrupts=o.interrupts,
        )

    async def stream(self, input: S | dict[str, Any], **kwargs: Any) -> AsyncIterator[Any]:
        """Run and yield typed events (``flowstate.events``) as they happen."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        async def go() -> None:
            try:
                await self.run(input, on_event=queue.put_nowait, **kwargs)
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
        """
        return await self._continue(
            run_id,
            value=value,
            answers=answers,
            allow_graph_change=allow_graph_change,
            max_steps=max_steps,
            limits=limits,
            wait=wait,
            emit=on_event,
        )

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
