"""What every step and activation of one execution shares: the run, its store, its graph,
its configuration and where its events go."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowstate.checkpoints import CheckpointStore, RunRecord
from flowstate.observability import RunObserver

from ._journal import JournalSource
from ._point import RunConfig

if TYPE_CHECKING:
    from ._builder import GraphIR
    from ._event_log import EventLog
    from ._group import CommitGroup
    from ._memory import MemoryBinding
    from ._state import StateSchema

__all__ = ["RunScope"]


@dataclass(frozen=True)
class RunScope:
    """Read-only context of one execution, handed to each ``Step`` and ``Activation``."""

    run: RunRecord
    """The run row as the execution found it."""
    store: CheckpointStore
    ir: GraphIR
    config: RunConfig
    services: dict[str, Any]
    """``ctx.services`` of every node (an LLM, tools, ...)."""
    memory: Callable[[], MemoryBinding]
    """The memory binding of the store (opened on first use of ``ctx.memory``)."""
    journal: JournalSource | None
    """Where effects come from when not in the run's own journal (replay, fork)."""
    emit: Callable[[Any], None]
    """Where events go."""
    listening: bool
    """Whether anyone but the store's event log listens (``on_event``, a stream,
    telemetry): per-node events are built as models and sent to ``emit`` only then."""
    rng: random.Random
    """Retry jitter."""
    resumed_step: int | None
    """The step a resume started in: only there can a journal or answers exist."""
    cancelled: Callable[[], bool]
    """Whether the run was cancelled (checked before each live effect)."""
    custom_reducers: frozenset[str]
    """State fields whose reducer is user code (it may refuse an update)."""
    observer: RunObserver | None = None
    """Telemetry of this run segment (flowstate.observability), or None when off."""
    log: EventLog | None = None
    """The store's event log of this run, or None: when nobody else listens, the
    per-node events are written to it directly, without their models (``_event_log``)."""
    group: CommitGroup | None = None
    """The group commit of the store, when it has one (``_group.py``)."""

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def schema(self) -> StateSchema:
        return self.ir.schema

    @property
    def replay(self) -> bool:
        """Strict replay: every effect must come from the recording."""
        return self.journal is not None and self.journal.strict
