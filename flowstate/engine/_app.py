"""``CompiledGraph``: run, resume, stream, inspect. One async core, a thin sync shell."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from flowstate.checkpoints import (
    Durability,
    RunRecord,
    SQLiteStore,
    StepRecord,
    WriteRecord,
)
from flowstate.errors import (
    CorruptRowError,
    GraphMismatch,
    InputRejected,
    LeaseLost,
    PayloadTooLarge,
    RunOwned,
    RunStateError,
)

from . import _events as ev
from ._lease import DEFAULT_LEASE_TTL, Heartbeat, local_owner_alive, new_owner, retire
from ._limits import Limits
from ._plan import start_tasks
from ._rows import parse

if TYPE_CHECKING:
    from ._replay import ReplayReport
from ._scheduler import Committed, Execution, JournalSource, Outcome, goto_from_json
from ._types import Task

if TYPE_CHECKING:
    from ._builder import GraphIR

__all__ = ["CompiledGraph", "HistoryEntry", "RunResult"]

S = TypeVar("S", bound=BaseModel)

DEFAULT_DB = "flowstate.db"


@dataclass
class RunResult(Generic[S]):
    """What a run, resume or fork returns."""

    run_id: str
    status: str
    """completed | paused | cancelled (a failure raises NodeFailed instead)."""
    state: S
    reason: str | None = None
    """Why the run paused (interrupt, breakpoint, limit) or was cancelled."""
    step: int = 0
    interrupts: list[Any] = field(default_factory=list)
    """Payloads of the interrupts waiting for an answer."""


@dataclass
class HistoryEntry:
    """One committed activation of a run."""

    step: int
    node: str
    task_path: str
    update: dict[str, Any]
    effects: int
    started_at: float
    finished_at: float
    run_id: str
    """The run the activation belongs to (a subgraph child run for nested entries)."""
    depth: int = 0
    """0 for the run's own activations, 1 for a subgraph's, 2 for a sub-subgraph's …"""
    usage: dict[str, int] = field(default_factory=dict)
    """LLM tokens used by the activation."""

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at) * 1000


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


class CompiledGraph(Generic[S]):
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
        self._check_signals = True
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
        except BaseException:
            retire(owner)
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
    ) -> RunResult[S]:
        config = {**parse("config", run.config, "runs", run.id, None), **(config_override or {})}
        sink = emit or (lambda e: None)
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
            listening=emit is not None,
            max_concurrency=config.get("max_concurrency"),
            limits=Limits(**config["limits"]) if "limits" in config else self.limits,
            tokens=tokens,
        )
        if resumed:
            exe.resumed_step = step.step
            exe.has_interrupts = True
        sink(ev.RunStarted(run_id=run.id, graph=self.name, resumed=resumed, step=step.step))
        inner = asyncio.ensure_future(exe.drive())
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
        finally:
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
        *,
        value: Any = None,
        allow_graph_change: bool = False,
        max_steps: int | None = None,
        limits: Limits | None = None,
        wait: float | None = None,
        on_event: Callable[[Any], None] | None = None,
    ) -> RunResult[S]:
        """Continue a crashed, failed, paused or cancelled run from its last commit.

        Committed activations never run again. ``value`` answers a pending interrupt. A run
        that another live process is executing is refused with ``RunOwned``, or waited for
        up to ``wait`` seconds.
        """
        return await self._continue(
            run_id,
            value=value,
            allow_graph_change=allow_graph_change,
            max_steps=max_steps,
            limits=limits,
            wait=wait,
            emit=on_event,
        )

    def resume_sync(self, run_id: str, **kwargs: Any) -> RunResult[S]:
        return asyncio.run(self.resume(run_id, **kwargs))

    async def _continue(
        self,
        run_id: str,
        *,
        value: Any = None,
        allow_graph_change: bool = False,
        max_steps: int | None = None,
        limits: Limits | None = None,
        emit: Callable[[Any], None] | None = None,
        journal: JournalSource | None = None,
        wait: float | None = None,
    ) -> RunResult[S]:
        store = self.store
        run = store.get_run(run_id)
        self.check_graph(run, allow_graph_change)
        owner = new_owner()
        try:
            epoch = 0
            if hasattr(store, "acquire"):
                deadline = time.monotonic() + (wait or 0.0)
                while True:
                    try:
                        epoch = store.acquire(
                            run_id, owner, self.lease_ttl, alive=local_owner_alive
                        )
                        break
                    except RunOwned:
                        if time.monotonic() >= deadline:
                            raise
                        await asyncio.sleep(min(0.5, self.lease_ttl / 3))
            chain = self._migration_chain(run)
            if chain:
                # rewrite the stored run to the current state version first, so rows
                # written from now on are never mixed with rows of an older version
                if not hasattr(store, "migrate_run"):
                    raise RunStateError(
                        f"run {run_id} needs a state-schema migration, which this store "
                        f"({type(store).__name__}) cannot apply in place"
                    )
                store.migrate_run(
                    run_id,
                    state=lambda raw: self._migrate(run_id, raw, "state"),
                    update=lambda raw: self._migrate(run_id, raw, "update"),
                    fingerprint=self.fingerprint,
                    graph_doc=self.graph_doc,
                )
                self._chains.pop(run_id, None)
                run = store.get_run(run_id)
            head = store.latest_step(run_id)
            if head is None:
                raise CorruptRowError("steps", run_id, None, "the run has no step rows")
            state, info = self._rebuild(run_id, head.step)
            if run.status == "completed" and not parse(
                "tasks", head.tasks, "steps", run_id, head.step
            ):
                if epoch:
                    store.release(run_id, owner, epoch)
                retire(owner)
                return RunResult(
                    run_id=run_id,
                    status="completed",
                    state=state,  # type: ignore[arg-type]
                    step=head.step,
                )
            if value is not None:
                # all of the run's interrupt rows are read (and hash-checked), so a corrupted
                # row is reported rather than the answer silently going nowhere
                recorded = store.interrupts(run_id)
                for i in recorded:
                    if i.answer is not None:
                        parse("json", i.answer, "interrupts", run_id, i.step)
                pending = [i for i in recorded if i.answer is None and i.step == head.step]
                if not pending:
                    raise RunStateError(
                        f"run {run_id} has no pending interrupt at step {head.step} to answer with "
                        "a value; resume it without one"
                    )
                store.answer_interrupt(pending[0], json.dumps(value))
            else:
                for i in store.interrupts(run_id, head.step):
                    if i.answer is None and i.seq == -1:  # a breakpoint: resuming passes it
                        store.answer_interrupt(i, "null")
            store.clear_signals(run_id)
            run = store.update_run(run_id, status="running", error=None)
            committed = {}
            for w in store.writes(run_id, head.step, head.step + 1):
                committed[w.task_path] = self._committed_from(w, run_id)
            override: dict[str, Any] = {}
            if max_steps is not None:
                override["max_steps"] = max_steps
            if limits is not None:
                override["limits"] = limits.model_dump()
            visits = store.visit_counts(run_id)
            tin = tout = 0
            for w in store.writes(run_id):
                if w.usage != "{}":
                    u = parse("usage", w.usage, "writes", run_id, w.step)
                    tin += u.get("input_tokens", 0)
                    tout += u.get("output_tokens", 0)
        except BaseException:
            retire(owner)
            raise
        return await self._execute(
            run,
            head,
            state,
            committed,
            emit,
            resumed=True,
            activations=sum(visits.values()),
            visits=visits,
            bytes_since=info["bytes_since"],
            steps_since=info["steps_since"],
            last_snapshot_bytes=info["snapshot_bytes"],
            config_override=override or None,
            journal=journal,
            tokens=(tin, tout),
            lease=(owner, epoch) if epoch else None,
        )

    def check_graph(self, run: RunRecord, allow_graph_change: bool = False) -> None:
        if run.fingerprint == self.fingerprint or allow_graph_change:
            return
        old = parse("graph_doc", run.graph_doc, "runs", run.id, None)
        new = json.loads(self.graph_doc)
        structure = lambda d: {k: v for k, v in d.items() if k not in ("state", "state_version")}  # noqa: E731
        if structure(old) == structure(new) and self._migration_chain(run):
            return  # only the state schema changed, and migrations cover it
        diff = graph_diff(old, new)
        if old.get("state") != new.get("state"):
            v_old, v_new = old.get("state_version", 1), self.ir.state_version
            if v_old == v_new:
                diff.append(
                    f"! the state schema changed but its version is still {v_new}: bump "
                    f"GraphBuilder(..., version={v_new + 1}) and register "
                    f"add_migration({v_new}, fn) to migrate stored runs"
                )
            else:
                missing = [v for v in range(v_old, v_new) if v not in self.ir.migrations]
                if missing:
                    diff.append(f"! no migration registered from state version(s) {missing}")
        raise GraphMismatch(run.id, diff)

    def _migration_chain(self, run: RunRecord) -> list[Callable[..., Any]] | None:
        """The migrations that bring this run's stored JSON to the current state version:
        [] when it is current, None when no chain exists."""
        recorded = parse("graph_doc", run.graph_doc, "runs", run.id, None).get("state_version", 1)
        if recorded == self.ir.state_version:
            return []
        if recorded > self.ir.state_version:
            return None
        chain = [self.ir.migrations.get(v) for v in range(recorded, self.ir.state_version)]
        return None if any(f is None for f in chain) else chain  # type: ignore[return-value]

    def _migrate(self, run_id: str, raw: str, kind: str) -> str:
        chain = self._chains.get(run_id)
        if chain is None:
            run = self.store.get_run(run_id)
            chain = self._migration_chain(run) or []
            self._chains[run_id] = chain
        if not chain:
            return raw
        doc = json.loads(raw)
        for fn in chain:
            try:
                n_params = len(inspect.signature(fn).parameters)
            except (TypeError, ValueError):
                n_params = 1
            doc = fn(doc, kind) if n_params >= 2 else fn(doc)
        return json.dumps(doc)

    def _committed_from(self, w: WriteRecord, run_id: str) -> Committed:
        try:
            update = self.ir.schema.load_update(self._migrate(run_id, w.update, "update"))
            goto = goto_from_json(w.goto, run_id, w.step)
        except (ValueError, ValidationError) as e:
            raise CorruptRowError("writes", run_id, w.step, f"update of '{w.node}': {e}") from None
        task = Task(w.node, w.task_path)
        return Committed(task, w, update, goto)

    def _rebuild(self, run_id: str, step: int) -> tuple[BaseModel, dict[str, int]]:
        """The input state of ``step``: the nearest snapshot plus the updates after it."""
        store = self.store
        snap = store.last_snapshot(run_id, step)
        if snap is None or snap.snapshot is None:
            raise CorruptRowError("steps", run_id, step, "no snapshot at or before this step")
        try:
            state = self.ir.schema.load_state(self._migrate(run_id, snap.snapshot, "state"))
        except (ValueError, ValidationError) as e:
            raise CorruptRowError("steps", run_id, snap.step, f"snapshot: {e}") from None
        by_step: dict[int, list[WriteRecord]] = {}
        nbytes = 0
        for w in store.writes(run_id, snap.step, step):
            by_step.setdefault(w.step, []).append(w)
            nbytes += len(w.update)
        # every closed step must hold exactly the activations it planned: a missing or
        # misplaced write row would otherwise yield a silently wrong state
        for row in store.steps(run_id, snap.step, step):
            planned = sorted(
                t["path"] for t in parse("tasks", row.tasks, "steps", run_id, row.step)
            )
            held = sorted(w.task_path for w in by_step.get(row.step, []))
            if planned != held:
                raise CorruptRowError(
                    "writes",
                    run_id,
                    row.step,
                    f"step {row.step} planned {planned} but the store holds writes {held}",
                )
        for s in sorted(by_step):
            ws = sorted(by_step[s], key=lambda w: w.seq)
            updates = [(w.node, self._committed_from(w, run_id).update) for w in ws]
            state = self.ir.schema.apply(state, updates, s)
        return state, {
            "bytes_since": nbytes,
            "steps_since": step - snap.step,
            "snapshot_bytes": len(snap.snapshot),
        }

    # -- inspection -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        return self.store.get_run(run_id)

    def get_state(self, run_id: str) -> S:
        """The run's current state (after its last closed step)."""
        self.store.get_run(run_id)
        head = self.store.latest_step(run_id)
        if head is None:
            raise CorruptRowError("steps", run_id, None, "the run has no step rows")
        return self._rebuild(run_id, head.step)[0]  # type: ignore[return-value]

    def state_at(self, run_id: str, step: int) -> S:
        """The state at the start of ``step`` (step 0 is the input)."""
        self.store.get_run(run_id)
        head = self.store.latest_step(run_id)
        if head is None or step < 0 or step > head.step:
            last = head.step if head else 0
            raise RunStateError(f"run {run_id} has steps 0..{last}; step {step} does not exist")
        return self._rebuild(run_id, step)[0]  # type: ignore[return-value]

    def history(self, run_id: str, *, nested: bool = True) -> list[HistoryEntry]:
        """Every committed activation of the run, in order. With ``nested`` (default),
        the activations of subgraph child runs follow the parent activation that ran
        them, with ``run_id`` set to the child run and ``depth`` to its nesting level."""
        store = self.store
        store.get_run(run_id)
        return self._history(run_id, nested, 0)

    def _history(self, run_id: str, nested: bool, depth: int) -> list[HistoryEntry]:
        store = self.store
        effects: dict[tuple[int, str], int] = {}
        for e in store.effects(run_id):
            effects[(e.step, e.task_path)] = effects.get((e.step, e.task_path), 0) + 1
        # ids only: a corrupt fork of this run must not break its parent's history
        children = set(store.child_run_ids(run_id)) if nested else set()
        out: list[HistoryEntry] = []
        for w in store.writes(run_id):
            out.append(
                HistoryEntry(
                    step=w.step,
                    node=w.node,
                    task_path=w.task_path,
                    update=parse("update", w.update, "writes", run_id, w.step),
                    effects=effects.get((w.step, w.task_path), 0),
                    started_at=w.started_at,
                    finished_at=w.finished_at,
                    run_id=run_id,
                    depth=depth,
                    usage=parse("usage", w.usage, "writes", run_id, w.step),
                )
            )
            child = f"{run_id}/{w.step}/{w.task_path}"
            if child in children:
                out += self._history(child, nested, depth + 1)
        return out

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


def graph_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between two graph documents."""
    out: list[str] = []
    on, nn = set(old.get("nodes", {})), set(new.get("nodes", {}))
    out += [f"- node '{n}' removed" for n in sorted(on - nn)]
    out += [f"+ node '{n}' added" for n in sorted(nn - on)]
    for n in sorted(on & nn):
        if old["nodes"][n] != new["nodes"][n]:
            out.append(f"~ node '{n}' changed: {old['nodes'][n]} -> {new['nodes'][n]}")
    for key in ("edges", "joins"):
        oe = {json.dumps(e) for e in old.get(key, [])}
        ne = {json.dumps(e) for e in new.get(key, [])}
        out += [f"- {key[:-1]} {e} removed" for e in sorted(oe - ne)]
        out += [f"+ {key[:-1]} {e} added" for e in sorted(ne - oe)]
    if old.get("routers") != new.get("routers"):
        out.append(f"~ routers changed: {old.get('routers')} -> {new.get('routers')}")
    op = old.get("state", {}).get("properties", {})
    np_ = new.get("state", {}).get("properties", {})
    out += [f"- state field '{f}' removed" for f in sorted(set(op) - set(np_))]
    out += [f"+ state field '{f}' added" for f in sorted(set(np_) - set(op))]
    out += [f"~ state field '{f}' retyped" for f in sorted(set(op) & set(np_)) if op[f] != np_[f]]
    if not out and old != new:
        out.append("~ the graph document differs (state schema details)")
    return out
