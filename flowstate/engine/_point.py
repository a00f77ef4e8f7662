"""Where a run (re)starts: the one value handed from ``run``, ``resume`` and ``fork`` to
the scheduler, with the run's configuration and its counters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from flowstate.checkpoints import RunRecord, StepRecord
from flowstate.observability import RunObserver

from ._journal import JournalSource
from ._limits import Limits
from ._outcome import Committed
from ._rows import parse

__all__ = ["Inherited", "Lease", "Progress", "ResumePoint", "RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    """The settings a run was started with, stored as JSON in ``runs.config`` so that a
    resume (in any process) runs under the same ones unless it overrides them."""

    max_steps: int
    """Most activations the run may commit before it pauses (``max_steps`` reached)."""
    limits: Limits
    """Byte limits and token/cost budgets."""
    interrupt_before: tuple[str, ...] = ()
    """Breakpoints: pause before these nodes run."""
    interrupt_after: tuple[str, ...] = ()
    """Breakpoints: pause after the step in which these nodes ran."""
    max_concurrency: int | None = None
    """Most activations of one step running at once (None: all)."""
    token_base: tuple[int, int] = (0, 0)
    """A subgraph's child run: the (input, output) tokens its run tree had used when it
    started, counted by its budgets but not reported as its own usage."""
    cost_base: float = 0.0
    """A subgraph's child run: the USD its run tree had spent when it started, counted by
    its cost budget (like ``token_base``)."""
    trace: dict[str, Any] | None = None
    """W3C trace context of the run's span (``{"traceparent": ...}``), so a resume in
    any process continues the run's trace (flowstate.observability)."""

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "max_concurrency": self.max_concurrency,
            "limits": self.limits.model_dump(),
            "max_steps": self.max_steps,
            "interrupt_before": list(self.interrupt_before),
            "interrupt_after": list(self.interrupt_after),
        }
        if self.token_base != (0, 0):
            doc["token_base"] = list(self.token_base)
        if self.cost_base:
            doc["cost_base"] = self.cost_base
        if self.trace is not None:
            doc["trace"] = self.trace
        return json.dumps(doc)

    @classmethod
    def of_run(cls, run: RunRecord, default_max_steps: int, default_limits: Limits) -> RunConfig:
        """The configuration stored with ``run`` (older rows may lack keys: defaults)."""
        doc = parse("config", run.config, "runs", run.id, None)
        return cls(
            max_steps=int(doc.get("max_steps", default_max_steps)),
            limits=Limits(**doc["limits"]) if "limits" in doc else default_limits,
            interrupt_before=tuple(doc.get("interrupt_before", ())),
            interrupt_after=tuple(doc.get("interrupt_after", ())),
            max_concurrency=doc.get("max_concurrency"),
            token_base=_pair(doc.get("token_base")),
            cost_base=float(doc.get("cost_base") or 0.0),
            trace=doc.get("trace"),
        )

    def inherit(self, parent: Inherited | None) -> RunConfig:
        """This configuration under a parent run's rules (a subgraph's child run)."""
        if parent is None:
            return self
        return replace(
            self,
            limits=parent.limits,
            token_base=parent.token_base,
            cost_base=parent.cost_base,
        )


def _pair(value: Any) -> tuple[int, int]:
    if not value:
        return (0, 0)
    return (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class Inherited:
    """What a subgraph's child run takes from its parent run: its limits (byte limits and
    budgets apply to the whole run tree) and the tokens and USD the tree had used so far."""

    limits: Limits
    token_base: tuple[int, int]
    cost_base: float = 0.0


@dataclass
class Progress:
    """A run's counters, carried across resumes (rebuilt from the store) and advanced
    only by the step that commits an activation."""

    activations: int = 0
    """Committed activations so far (``max_steps`` counts these)."""
    visits: dict[str, int] = field(default_factory=dict)
    """Committed activations per node (``max_visits``)."""
    tokens_in: int = 0
    tokens_out: int = 0
    """LLM tokens used by committed activations (token budget)."""
    cost_usd: float = 0.0
    """USD spent by committed activations, priced per model by ``Limits.cost_of`` (cost
    budget); for a child run, from its run tree's spend when it started."""
    bytes_since_snapshot: int = 0
    """Update bytes committed since the last state snapshot."""
    steps_since_snapshot: int = 0
    """Steps closed since the last state snapshot."""
    last_snapshot_bytes: int = 0
    """Size of the last state snapshot (the next one waits for twice as many bytes)."""
    measured_bytes: int = -1
    """Size of the state's JSON when last measured (a snapshot, or a ``max_state_bytes``
    check); -1 until then: ``last_snapshot_bytes``."""
    bytes_since_measured: int = -1
    """Update bytes merged since ``measured_bytes``; -1: ``bytes_since_snapshot``. The
    state is at most ``measured_bytes + bytes_since_measured`` bytes, so it is only
    serialised to be measured when that bound passes ``max_state_bytes``."""

    def __post_init__(self) -> None:
        if self.measured_bytes < 0:
            self.measured_bytes = self.last_snapshot_bytes
        if self.bytes_since_measured < 0:
            self.bytes_since_measured = self.bytes_since_snapshot


@dataclass(frozen=True)
class Lease:
    """This process's hold on a run: its owner identity and fencing epoch."""

    owner: str
    epoch: int


@dataclass
class ResumePoint:
    """Everything the scheduler needs to drive a run from a step row onwards."""

    run: RunRecord
    step: StepRecord
    """The step row the run continues from (step 0 for a new run)."""
    state: BaseModel
    """The input state of that step."""
    config: RunConfig
    progress: Progress
    committed: dict[str, Committed] = field(default_factory=dict)
    """Activations of that step already committed (never run again), by task path."""
    resumed: bool = False
    """True when continuing a stored run: only then can the step hold a journal or
    interrupt answers of its own."""
    journal: JournalSource | None = None
    """Where effects come from when not in the run's own journal (replay, fork)."""
    lease: Lease | None = None
    """The lease held on the run, released when the execution ends."""
    observer: RunObserver | None = None
    """Telemetry of this run segment, when observability is on (made by ``_execute``
    for a resume)."""
    took_over: bool = False
    """The resume took the run over from a process that died while running it."""
