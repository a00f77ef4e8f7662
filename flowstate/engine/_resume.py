"""Resume: take the run's lease, migrate its stored JSON if the state version moved on,
answer its pending interrupt, and rebuild where the run resumes from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from flowstate.checkpoints import CheckpointStore, LeaseStore, RunRecord
from flowstate.errors import CorruptRowError, EditRefused, RunOwned

from ._edit import commit_edit, is_edit
from ._identity import GraphIdentity
from ._inspect import RunReader
from ._interrupts import BREAKPOINT_SEQ, UNSET, answer_interrupts
from ._journal import JournalSource
from ._lease import local_owner_alive, new_owner, retire
from ._limits import Limits
from ._point import Inherited, Lease, Progress, ResumePoint, RunConfig
from ._rows import parse
from ._waker import check_due

__all__ = ["Finished", "resume_point"]


class Finished:
    """The run to resume had completed: nothing to drive."""

    def __init__(self, run: RunRecord, state: Any, step: int) -> None:
        self.run, self.state, self.step = run, state, step


async def _acquire(store: LeaseStore, run_id: str, owner: str, ttl: float, wait: float) -> int:
    deadline = time.monotonic() + wait
    while True:
        try:
            return store.acquire(run_id, owner, ttl, alive=local_owner_alive)
        except RunOwned:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(min(0.5, ttl / 3))


async def resume_point(
    store: CheckpointStore,
    identity: GraphIdentity,
    reader: RunReader,
    run_id: str,
    *,
    defaults: RunConfig,
    lease_ttl: float,
    value: Any = UNSET,
    answers: Mapping[str, Any] | None = None,
    update: Mapping[str, Any] | None = None,
    goto: Sequence[str] = (),
    rerun_step: bool = False,
    allow_graph_change: bool = False,
    max_steps: int | None = None,
    limits: Limits | None = None,
    journal: JournalSource | None = None,
    wait: float | None = None,
    inherit: Inherited | None = None,
    due: float | None = None,
) -> ResumePoint | Finished:
    """Where run ``run_id`` continues: its head step, the state there, the activations of
    that step already committed, its counters and configuration, and the lease taken on
    it (when the store keeps leases). ``Finished`` when it had completed. ``rerun_step``:
    the head step's committed activations are superseded and run again. With ``due`` (a
    waker's time), ``NotDue`` unless the run's wake-up time is at or before it."""
    run = store.get_run(run_id)
    # still 'running' with no live owner (acquire below refuses a live one): the
    # process that ran it died, and this resume takes its lease over
    took_over = run.status == "running"
    identity.check(run, allow_graph_change)
    owner = new_owner()
    epoch = 0
    try:
        if isinstance(store, LeaseStore):
            epoch = await _acquire(store, run_id, owner, lease_ttl, wait or 0.0)
        if due is not None:
            # a waker resumes only a run still due once it holds the lease (another waker
            # or a human may have resumed it since it was listed)
            check_due(store, run_id, due, owner, epoch)
        chain = identity.chain(run)
        if chain:
            # rewrite the stored run to the current state version first, so rows
            # written from now on are never mixed with rows of an older version
            store.migrate_run(
                run_id,
                state=lambda raw: identity.migrate(lambda: run, run_id, raw, "state"),
                update=lambda raw: identity.migrate(lambda: run, run_id, raw, "update"),
                fingerprint=identity.fingerprint,
                graph_doc=identity.graph_doc,
            )
            identity.forget(run_id)
            run = store.get_run(run_id)
        if update is not None or goto:  # issue 19: an edit first, as a recorded input
            if goto and (value is not UNSET or answers):
                raise EditRefused(
                    run_id,
                    f"goto={list(goto)} drops the activations waiting for the answer given; "
                    "answer the interrupt first, then resume with goto (or goto alone)",
                )
            if rerun_step:  # the step runs again: its input may be edited first
                store.supersede_writes(run_id, reader.head(run).step)
            commit_edit(reader.ir, reader, store, run_id, update or {}, goto=goto)
            run = store.get_run(run_id)
        head = reader.head(run)
        rebuilt = reader.rebuild(run_id, head.step)
        if run.status == "completed":
            # a completed run is never executed again, whatever its rows say
            if parse("tasks", head.tasks, "steps", run_id, head.step):
                raise CorruptRowError(
                    "steps",
                    run_id,
                    head.step,
                    "the run is completed but its head step plans more activations",
                )
            if epoch and isinstance(store, LeaseStore):
                store.release(run_id, owner, epoch)
            retire(owner)
            return Finished(run, rebuilt.state, head.step)
        if value is not UNSET or answers:
            # all of the run's interrupt rows are read (and hash-checked), so a corrupted
            # row is reported rather than the answer silently going nowhere
            for i in store.interrupts(run_id):
                if i.answer is not None:
                    parse("json", i.answer, "interrupts", run_id, i.step)
            answer_interrupts(store, run_id, value=value, answers=answers)
        else:
            for i in store.interrupts(run_id, head.step):
                if i.answer is None and i.seq == BREAKPOINT_SEQ:  # resuming passes it
                    store.answer_interrupt(i, "null")
        store.clear_signals(run_id)
        if rerun_step:
            # the head step's committed activations run again (after a fix of their
            # node): their writes leave the step in one fenced transaction and stay
            # visible as attempts rows; effects they journaled are served again by the
            # usual rules (same request: the journal; a changed one: live, replaced)
            store.supersede_writes(run_id, head.step)
        run = store.update_run(run_id, status="running", error=None)
        committed = {
            w.task_path: reader.committed_from(w, run_id)
            for w in store.writes(run_id, head.step, head.step + 1)
            if not is_edit(w)
        }
        config = RunConfig.of_run(run, defaults.max_steps, defaults.limits)
        if max_steps is not None or limits is not None:
            config = replace(
                config,
                max_steps=max_steps if max_steps is not None else config.max_steps,
                limits=limits if limits is not None else config.limits,
            )
        config = config.inherit(inherit)
        visits = store.visit_counts(run_id)
        progress = Progress(
            activations=sum(visits.values()),
            visits=visits,
            bytes_since_snapshot=rebuilt.bytes_since_snapshot,
            steps_since_snapshot=rebuilt.steps_since_snapshot,
            last_snapshot_bytes=rebuilt.snapshot_bytes,
        )
        spent: dict[str, int] = {}
        for w in store.writes(run_id):
            if is_edit(w):  # an edit is not an activation: no visit, no usage
                progress.activations -= 1
                visits[w.node] -= 1
                if not visits[w.node]:
                    del visits[w.node]
                continue
            if w.usage != "{}":
                u = parse("usage", w.usage, "writes", run_id, w.step)
                progress.tokens_in += u.get("input_tokens", 0)
                progress.tokens_out += u.get("output_tokens", 0)
                for key, count in u.items():
                    spent[key] = spent.get(key, 0) + count
        # priced once over the run's summed counts (per model when they name one)
        progress.cost_usd = config.limits.cost_of(spent)
    except BaseException:
        retire(owner)
        raise
    return ResumePoint(
        run=run,
        step=head,
        state=rebuilt.state,
        config=config,
        progress=progress,
        committed=committed,
        resumed=True,
        journal=journal,
        lease=Lease(owner, epoch) if epoch else None,
        took_over=took_over,
    )
