"""Reading runs back: rebuild a state at any step from its snapshot and updates, history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from flowstate.checkpoints import CheckpointStore, RunRecord, StepRecord, WriteRecord
from flowstate.errors import CorruptRowError, RunStateError

from ._edit import edit_by, is_edit, is_routing_edit
from ._identity import GraphIdentity
from ._outcome import Committed, goto_from_json
from ._results import HistoryEntry
from ._rows import parse
from ._types import Task

if TYPE_CHECKING:
    from ._builder import GraphIR

__all__ = ["Rebuilt", "RunReader", "check_step_rows"]


def check_step_rows(run_id: str, got: list[int], start: int, stop: int) -> None:
    """The step rows read for ``[start, stop)`` must be exactly those steps: a row that a
    damaged index hides is reported, not skipped."""
    if got != list(range(start, stop)):
        missing = sorted(set(range(start, stop)) - set(got))
        raise CorruptRowError(
            "steps",
            run_id,
            missing[0] if missing else None,
            f"expected step rows {start}..{stop - 1} but read {got[:20]} "
            "(a damaged index or a lost row)",
        )


def _check_planned(run_id: str, row: StepRecord, writes: list[WriteRecord]) -> None:
    """A closed step holds a write for each activation it planned, or was closed by a
    routing edit (``update_state(as_node=...)``), which dropped them."""
    held = sorted(w.task_path for w in writes if not is_edit(w))
    if any(is_routing_edit(w) for w in writes) and not held:
        return
    planned = sorted(t["path"] for t in parse("tasks", row.tasks, "steps", run_id, row.step))
    if planned != held:
        raise CorruptRowError(
            "writes",
            run_id,
            row.step,
            f"step {row.step} planned {planned} but the store holds writes {held}",
        )


@dataclass
class Rebuilt:
    """A state rebuilt from the store, and what the snapshot policy needs to know."""

    state: BaseModel
    bytes_since_snapshot: int
    """Update bytes replayed on top of the snapshot."""
    steps_since_snapshot: int
    snapshot_bytes: int
    """Size of the snapshot it started from."""


class RunReader:
    """Reads runs back from a store: the state at any step (nearest snapshot plus the
    updates after it, migrated to the current state version), committed activations,
    and the history of a run with its subgraph child runs."""

    def __init__(self, ir: GraphIR, identity: GraphIdentity, store: CheckpointStore) -> None:
        self.ir = ir
        self.identity = identity
        self.store = store

    def _migrate(self, run_id: str, raw: str, kind: str) -> str:
        return self.identity.migrate(lambda: self.store.get_run(run_id), run_id, raw, kind)

    def committed_from(self, w: WriteRecord, run_id: str) -> Committed:
        """A stored write as the scheduler keeps a committed activation."""
        try:
            update = self.ir.schema.load_update(self._migrate(run_id, w.update, "update"))
            goto = goto_from_json(w.goto, run_id, w.step)
        except (ValueError, ValidationError) as e:
            raise CorruptRowError("writes", run_id, w.step, f"update of '{w.node}': {e}") from None
        task = Task(w.node, w.task_path)
        return Committed(task, w, update, goto)

    def rebuild(self, run_id: str, step: int) -> Rebuilt:
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
        # the step itself contributes its plain edits (update_state): they are its input;
        # a routing edit (as_node, goto) closed its step, so it belongs to the step after
        for w in store.writes(run_id, snap.step, step + 1):
            if w.step < step or (is_edit(w) and not is_routing_edit(w)):
                by_step.setdefault(w.step, []).append(w)
                nbytes += len(w.update)
        # every closed step must hold exactly the activations it planned: a missing or
        # misplaced write row would otherwise yield a silently wrong state
        rows = store.steps(run_id, snap.step, step) if snap.step < step else []
        check_step_rows(run_id, [r.step for r in rows], snap.step, step)
        for row in rows:
            _check_planned(run_id, row, by_step.get(row.step, []))
        for s in sorted(by_step):
            ws = sorted(by_step[s], key=lambda w: w.seq)
            # each edit is folded in alone (an edit may rewrite a field a later one or
            # the step's activations write too), then the step's activations together
            for w in ws:
                if is_edit(w):
                    upd = self.committed_from(w, run_id).update
                    state = self.ir.schema.apply(state, [(w.node, upd)], s)
            updates = [
                (w.node, self.committed_from(w, run_id).update) for w in ws if not is_edit(w)
            ]
            state = self.ir.schema.apply(state, updates, s)
        return Rebuilt(state, nbytes, step - snap.step, len(snap.snapshot))

    # -- inspection -------------------------------------------------------------------------

    def head(self, run: RunRecord) -> StepRecord:
        """The run's latest step row, cross-checked against what the run row promises: a
        damaged index can make the "latest" read return an older step (or none), which
        would silently rebuild a wrong state."""
        head: StepRecord | None = None
        for _ in range(5):
            head = self.store.latest_step(run.id)
            if head is None:
                raise CorruptRowError("steps", run.id, None, "the run has no step rows")
            if head.step == run.head_step:
                return head
            # another process may have advanced the run between the two reads: only a
            # disagreement with an unchanged run row is damage
            again = self.store.get_run(run.id)
            if again == run:
                break
            run = again
        assert head is not None
        if head.step != run.head_step:
            raise CorruptRowError(
                "steps",
                run.id,
                head.step,
                f"the run row says its head is step {run.head_step} but the latest step "
                f"row read is step {head.step} (a damaged index or a lost row)",
            )
        return head

    def get_state(self, run_id: str) -> BaseModel:
        """The run's current state (after its last closed step)."""
        head = self.head(self.store.get_run(run_id))
        return self.rebuild(run_id, head.step).state

    def state_at(self, run_id: str, step: int) -> BaseModel:
        """The state at the start of ``step`` (step 0 is the input)."""
        run = self.store.get_run(run_id)
        # the head row is cross-checked only when it is the step asked for: an earlier
        # step's rows are checked by ``rebuild`` itself (its snapshot, writes and steps)
        last = self.head(run).step if step >= run.head_step else run.head_step
        if step < 0 or step > last:
            raise RunStateError(f"run {run_id} has steps 0..{last}; step {step} does not exist")
        return self.rebuild(run_id, step).state

    def history(self, run_id: str, *, nested: bool = True) -> list[HistoryEntry]:
        """Every committed activation of the run, in order. With ``nested`` (default),
        the activations of subgraph child runs follow the parent activation that ran
        them, with ``run_id`` set to the child run and ``depth`` to its nesting level."""
        return self._history(run_id, nested, 0)

    def _history(self, run_id: str, nested: bool, depth: int) -> list[HistoryEntry]:
        store = self.store
        run = store.get_run(run_id)
        writes = store.writes(run_id)
        # the history must hold every activation the run's steps planned: a damaged index
        # would otherwise return fewer entries without a word
        # steps are read last and cut at the head read first: a step closed meanwhile by
        # another process is not mistaken for damage
        rows = [r for r in store.steps(run_id) if r.step <= run.head_step]
        check_step_rows(run_id, [r.step for r in rows], 0, run.head_step + 1)
        held: dict[int, list[WriteRecord]] = {}
        for w in writes:
            held.setdefault(w.step, []).append(w)
        for row in rows[:-1]:
            _check_planned(run_id, row, held.get(row.step, []))
        effects: dict[tuple[int, str], int] = {}
        for e in store.effects(run_id):
            effects[(e.step, e.task_path)] = effects.get((e.step, e.task_path), 0) + 1
        # ids only: a corrupt fork of this run must not break its parent's history
        children = set(store.child_run_ids(run_id)) if nested else set()
        out: list[HistoryEntry] = []
        for w in writes:
            if depth == 0:  # a subgraph's child run has its own state model
                # validated as a replay would (update against the state model, goto):
                # with a snapshot at every step of a small state, nothing else may
                # ever read it
                self.committed_from(w, run_id)
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
                    edit=is_edit(w),
                    by=edit_by(w),
                )
            )
            child = f"{run_id}/{w.step}/{w.task_path}"
            if child in children:
                out += self._history(child, nested, depth + 1)
        return out
