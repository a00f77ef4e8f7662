"""``GraphCore``: a compiled graph bound to its checkpoint store — its settings, the store
and the reader over it, the run configuration they resolve to, and the stored runs read back.

``CompiledGraph`` is built on it (``_app_runs.GraphRunner`` adds executing runs, ``_app``
the entry points layered over them)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel

from flowstate.checkpoints import CheckpointStore, Durability, RunRecord

from ._identity import GraphIdentity
from ._inspect import RunReader
from ._interrupts import PendingInterrupt, pending_interrupts
from ._lease import DEFAULT_LEASE_TTL
from ._limits import Limits
from ._open import StoreArg, open_store
from ._outcome import Outcome
from ._point import RunConfig
from ._results import HistoryEntry

if TYPE_CHECKING:
    from ._builder import GraphIR
    from ._memory import MemoryBinding

__all__ = ["GraphCore"]

S = TypeVar("S", bound=BaseModel)


class GraphCore(Generic[S]):
    """A validated graph bound to a checkpoint store: what every part of ``CompiledGraph``
    shares (settings, store, reader, configuration) and reading its runs back."""

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

    def check_graph(self, run: RunRecord, allow_graph_change: bool = False) -> None:
        """Raise ``GraphMismatch`` (with a diff) when ``run`` was recorded with another
        graph that migrations do not cover."""
        self.identity.check(run, allow_graph_change)

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

    # -- reading -----------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        """The run's row (status, head step, error, ...)."""
        return self.store.get_run(run_id)

    def get_state(self, run_id: str) -> S:
        """The run's current state (after its last closed step)."""
        return cast("S", self.reader.get_state(run_id))

    def state_at(self, run_id: str, step: int) -> S:
        """The state at the start of ``step`` (step 0 is the input)."""
        return cast("S", self.reader.state_at(run_id, step))

    def history(self, run_id: str, *, nested: bool = True) -> list[HistoryEntry]:
        """Every committed activation of the run, in order. With ``nested`` (default),
        the activations of subgraph child runs follow the parent activation that ran
        them, with ``run_id`` set to the child run and ``depth`` to its nesting level."""
        return self.reader.history(run_id, nested=nested)

    def pending_interrupts(self, run_id: str) -> list[PendingInterrupt]:
        """The run's pending interrupts (its subgraphs' included), in task order, each
        with the stable id that ``resume(run_id, answers={id: value})`` takes."""
        self.store.get_run(run_id)
        return pending_interrupts(self.store, run_id)

    def to_mermaid(self) -> str:
        from ._render import to_mermaid

        return to_mermaid(self.ir)
