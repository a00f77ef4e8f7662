"""Addressable interrupts: every pending interrupt of a run tree has a stable id, and
answers are addressed by it.

An id is derived from where the interrupt was raised, never from when: the step, the
activation's task path and the interrupt's sequence number within the activation,
``"{step}:{task_path}:{seq}"``. An interrupt inside a subgraph is prefixed with the
parent activation that runs the subgraph, one ``"{step}:{task_path}/"`` per level, so
``"3:review/1:ask[2]:0"`` is the first interrupt of the activation ``ask[2]`` at step 1 of
the subgraph that node ``review`` ran at step 3. The same run gives the same ids in every
process and after any restart.

Interrupts are listed in task order, the order in which the step planned its
activations (so ``ask[2]`` comes before ``ask[10]``), then by sequence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pydantic_core

from flowstate.checkpoints import InterruptRecord
from flowstate.errors import RunStateError

from ._rows import parse

__all__ = [
    "BREAKPOINT_SEQ",
    "SUBGRAPH_SEQ",
    "TIMER_SEQ",
    "UNSET",
    "PendingInterrupt",
    "answer_interrupts",
    "pending_interrupts",
]

BREAKPOINT_SEQ: Final = -1
"""Sequence number of an ``interrupt_before`` breakpoint's row (resuming passes it)."""
TIMER_SEQ: Final = -3
"""Sequence number of a timer's row: a sleep, or the deadline of interrupt ``seq`` (its
payload says which, with the wake-up time); never answered, never listed as pending."""
SUBGRAPH_SEQ: Final = -2
"""Sequence number of the row a subgraph activation records when its child run stops:
it is never answered itself, its child's interrupts are listed in its place."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[Any] = _Unset()
"""Default of ``resume(value=...)``: no answer given (``None`` is an answer)."""


@dataclass(frozen=True)
class PendingInterrupt:
    """An interrupt waiting for an answer: ``resume(run_id, answers={id: value})``."""

    id: str
    """Stable id: ``"{step}:{task_path}:{seq}"``, prefixed per subgraph level."""
    node: str
    """The node that called ``ctx.interrupt``."""
    task_path: str
    """The activation within its step: ``node`` or ``node[i]`` for the i-th Send."""
    step: int
    """The step of the run that holds it (``run_id``)."""
    seq: int
    """Order of the interrupt within its activation, from 0."""
    payload: Any
    """What the node passed to ``ctx.interrupt(payload)``."""
    run_id: str
    """The run that holds it: the run itself, or a subgraph's child run."""
    record: InterruptRecord | None = field(default=None, repr=False, compare=False)
    deadline: float | None = None
    """When it times out (``ctx.interrupt(..., timeout=...)``), seconds since the epoch."""

    def to_json(self) -> dict[str, Any]:
        return {
            "deadline": self.deadline,
            "id": self.id,
            "node": self.node,
            "task_path": self.task_path,
            "step": self.step,
            "seq": self.seq,
            "payload": self.payload,
            "run_id": self.run_id,
        }


def _natural(path: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path))


def _node_of(path: str) -> str:
    return path.split("[", 1)[0]


def pending_interrupts(store: Any, run_id: str) -> list[PendingInterrupt]:
    """The run's pending interrupts, its subgraphs' included, in task order."""
    head = store.latest_step(run_id)
    if head is None:
        return []
    tasks = parse("tasks", head.tasks, "steps", run_id, head.step)
    order = {t["path"]: i for i, t in enumerate(tasks)}
    nodes = {t["path"]: t["node"] for t in tasks}
    rows = [i for i in store.interrupts(run_id, head.step) if i.answer is None]
    deadlines: dict[tuple[str, int], float] = {}
    for i in rows:
        if i.seq == TIMER_SEQ:
            t = parse("json", i.payload, "interrupts", run_id, i.step)
            if isinstance(t, dict) and t.get("kind") == "deadline":
                deadlines[(i.task_path, int(t["seq"]))] = float(t["wake_at"])
    rows.sort(key=lambda i: (order.get(i.task_path, len(order)), _natural(i.task_path), i.seq))
    out: list[PendingInterrupt] = []
    for i in rows:
        if i.seq in (BREAKPOINT_SEQ, TIMER_SEQ):
            continue
        if i.seq == SUBGRAPH_SEQ:
            child = f"{run_id}/{i.step}/{i.task_path}"
            prefix = f"{i.step}:{i.task_path}/"
            for c in pending_interrupts(store, child):
                out.append(
                    PendingInterrupt(
                        id=prefix + c.id,
                        node=c.node,
                        task_path=c.task_path,
                        step=c.step,
                        seq=c.seq,
                        payload=c.payload,
                        run_id=c.run_id,
                        record=c.record,
                        deadline=c.deadline,
                    )
                )
            continue
        out.append(
            PendingInterrupt(
                id=f"{i.step}:{i.task_path}:{i.seq}",
                node=nodes.get(i.task_path, _node_of(i.task_path)),
                task_path=i.task_path,
                step=i.step,
                seq=i.seq,
                payload=parse("json", i.payload, "interrupts", run_id, i.step),
                run_id=run_id,
                record=i,
                deadline=deadlines.get((i.task_path, i.seq)),
            )
        )
    return out


def answer_interrupts(
    store: Any,
    run_id: str,
    *,
    value: Any = UNSET,
    answers: Mapping[str, Any] | None = None,
) -> list[PendingInterrupt]:
    """Store answers to pending interrupts of ``run_id`` (its subgraphs' included).

    ``value`` answers the one pending interrupt (refused when there are several: their
    ids are listed); ``answers`` maps ids to values and may answer any subset. Returns
    the interrupts answered. Nothing is stored unless every id is known.
    """
    given = value is not UNSET
    if given and answers:
        raise RunStateError(
            f"resume of run {run_id}: pass value= or answers=, not both; answers={{id: value}} "
            "can answer every pending interrupt"
        )
    if not given and not answers:
        return []
    pending = pending_interrupts(store, run_id)
    if not pending:
        raise RunStateError(
            f"run {run_id} has no pending interrupt to answer; resume it without a value"
        )
    ids = ", ".join(repr(p.id) for p in pending)
    if given:
        if len(pending) > 1:
            raise RunStateError(
                f"run {run_id} has {len(pending)} pending interrupts ({ids}); a single value "
                "cannot say which one it answers: resume(run_id, answers={id: value, ...}) "
                "(CLI: --answer ID=JSON)"
            )
        answers = {pending[0].id: value}
    assert answers is not None
    by_id = {p.id: p for p in pending}
    unknown = [k for k in answers if k not in by_id]
    if unknown:
        raise RunStateError(
            f"run {run_id} has no pending interrupt {', '.join(map(repr, unknown))}; pending: {ids}"
        )
    encoded: list[tuple[PendingInterrupt, str]] = []
    for k, v in answers.items():
        try:
            encoded.append((by_id[k], pydantic_core.to_json(v).decode()))
        except pydantic_core.PydanticSerializationError as e:
            raise RunStateError(
                f"the answer to interrupt {k!r} of run {run_id} is not JSON ({e}); answer "
                "with plain data"
            ) from None
    for p, raw in encoded:
        assert p.record is not None
        store.answer_interrupt(p.record, raw)
    return [p for p, _ in encoded]
