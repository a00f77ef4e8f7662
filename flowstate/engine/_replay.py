"""Offline replay and fork.

Replay re-executes a recorded run from its input into a scratch store, serving every
effect from the recorded journal (nothing is performed live: a missing or different effect
request is itself a divergence), and compares each activation's update with the recorded
one. The first difference is reported as data (step, node, field diff). This is how a code
change is checked against yesterday's runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from flowstate.checkpoints import RunRecord, SQLiteStore, StepRecord, WriteRecord
from flowstate.errors import EffectDivergence, NodeFailed, ReplayDivergence, RunStateError
from flowstate.observability import run_observer

from ._journal import JournalSource
from ._point import Progress, ResumePoint, RunConfig

if TYPE_CHECKING:
    from ._app import CompiledGraph, RunResult

__all__ = ["Divergence", "ReplayReport", "fork", "fork_rows", "replay"]


class Divergence(BaseModel):
    """Where a replay first differed from the recording."""

    kind: Literal["update", "effect", "extra_activation", "missing_activation", "error"]
    run_id: str
    """The run (or the subgraph child run) it happened in."""
    step: int
    node: str
    task_path: str
    fields: dict[str, dict[str, Any]] = {}
    """Field-level diff of the update: field -> {"recorded": ..., "replayed": ...}."""
    effect: dict[str, Any] | None = None
    """For an effect divergence: seq, name, the recorded request and the new one."""
    message: str


class ReplayReport(BaseModel):
    run_id: str
    identical: bool
    activations: int
    """How many recorded activations were replayed and matched."""
    first_divergence: Divergence | None = None
    recorded_status: str
    replay_status: str

    def summary(self) -> str:
        if self.identical:
            return (
                f"run {self.run_id}: replay identical ({self.activations} activations, "
                f"no LLM, tool or network call)"
            )
        d = self.first_divergence
        assert d is not None
        return f"run {self.run_id}: diverged at step {d.step}, node '{d.node}': {d.message}"


class _Mismatch(Exception):
    def __init__(self, d: Divergence) -> None:
        super().__init__(d.message)
        self.divergence = d


class _Frontier(Exception):
    """The recording ends here (the recorded run crashed or paused): stop replaying."""


def _diff(recorded: dict[str, Any], replayed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k in sorted(set(recorded) | set(replayed)):
        a, b = recorded.get(k, "<not written>"), replayed.get(k, "<not written>")
        if a != b:
            out[k] = {"recorded": a, "replayed": b}
    return out


async def replay(
    app: CompiledGraph[Any],
    run_id: str,
    *,
    raise_on_divergence: bool = True,
    allow_graph_change: bool = False,
) -> ReplayReport:
    source = app.store
    recorded_run = source.get_run(run_id)
    app.identity.check(recorded_run, allow_graph_change)
    cache: dict[str, dict[tuple[int, str], WriteRecord]] = {}
    statuses: dict[str, str] = {}

    def recorded_writes(rid: str) -> dict[tuple[int, str], WriteRecord]:
        if rid not in cache:
            cache[rid] = {(w.step, w.task_path): w for w in source.writes(rid)}
            run = source.find_run(rid)
            statuses[rid] = run.status if run is not None else "missing"
        return cache[rid]

    matched: set[tuple[str, int, str]] = set()

    def check(rid: str, write: WriteRecord, update: dict[str, Any]) -> None:
        rec = recorded_writes(rid).get((write.step, write.task_path))
        if rec is None:
            if statuses.get(rid) != "completed":
                raise _Frontier()
            raise _Mismatch(
                Divergence(
                    kind="extra_activation",
                    run_id=rid,
                    step=write.step,
                    node=write.node,
                    task_path=write.task_path,
                    message=f"'{write.task_path}' ran at step {write.step}, which the recording "
                    "never did",
                )
            )
        a, b = json.loads(rec.update), json.loads(write.update)
        if a != b or json.loads(rec.goto) != json.loads(write.goto):
            fields = _diff(a, b)
            if json.loads(rec.goto) != json.loads(write.goto):
                fields["<goto>"] = {
                    "recorded": json.loads(rec.goto),
                    "replayed": json.loads(write.goto),
                }
            raise _Mismatch(
                Divergence(
                    kind="update",
                    run_id=rid,
                    step=write.step,
                    node=write.node,
                    task_path=write.task_path,
                    fields=fields,
                    message=f"update differs in {sorted(fields)}",
                )
            )
        matched.add((rid, write.step, write.task_path))

    scratch = SQLiteStore(":memory:")
    clone = app.bind(scratch)
    # a thread's later turn stores its own input (an update); its start state is step 0's
    first = source.get_step(run_id, 0) if (recorded_run.turn or 0) > 1 else None
    state = app.ir.schema.load_state(
        first.snapshot if first and first.snapshot else recorded_run.input
    )
    journal = JournalSource(store=source, strict=True, check=check)
    divergence: Divergence | None = None
    status = "completed"
    try:
        result = await clone._start(
            state,
            run_id=run_id,
            journal=journal,
            # breakpoints paused the recording, they do not change what ran: replay
            # passes them (interrupts inside nodes are answered from the recording)
            config=replace(
                RunConfig.of_run(recorded_run, app.max_steps, app.limits),
                interrupt_before=(),
                interrupt_after=(),
            ),
        )
        status = result.status
    except _Mismatch as m:
        divergence, status = m.divergence, "diverged"
    except _Frontier:
        status = "frontier"
    except NodeFailed as e:
        cause = e.__cause__
        unrecorded = not any(
            w.step == e.step and w.node == e.node for w in recorded_writes(e.run_id).values()
        )
        if (
            isinstance(cause, EffectDivergence)
            and unrecorded
            and statuses.get(e.run_id) != "completed"
        ):
            status = "frontier"  # the recording stopped inside this activation
        elif isinstance(cause, EffectDivergence):
            rec = cause.recorded
            divergence = Divergence(
                kind="effect",
                run_id=e.run_id,
                step=e.step,
                node=e.node,
                task_path=e.node,
                effect={
                    "seq": cause.seq,
                    "name": cause.name,
                    "recorded_name": rec.name if rec else None,
                    "recorded_request": json.loads(rec.request) if rec else None,
                    "request": json.loads(cause.request),
                },
                message=(
                    f"effect #{cause.seq} '{cause.name}' requested {cause.request}, the "
                    + (
                        f"recording has '{rec.name}' {rec.request}"
                        if rec
                        else "recording has no such effect"
                    )
                ),
            )
            status = "diverged"
        elif recorded_run.status == "failed" and e.step == recorded_run.head_step:
            status = "failed"  # the recording failed at the same place
        else:
            divergence = Divergence(
                kind="error",
                run_id=e.run_id,
                step=e.step,
                node=e.node,
                task_path=e.node,
                message=f"the node raised where the recording did not: {e.message}",
            )
            status = "failed"
    finally:
        scratch.close()
    if divergence is None and recorded_run.status == "completed":
        for (step, path), w in sorted(recorded_writes(run_id).items()):
            if (run_id, step, path) not in matched:
                divergence = Divergence(
                    kind="missing_activation",
                    run_id=run_id,
                    step=step,
                    node=w.node,
                    task_path=path,
                    message=f"the recording ran '{path}' at step {step}; the replay did not",
                )
                break
    report = ReplayReport(
        run_id=run_id,
        identical=divergence is None,
        activations=len(matched),
        first_divergence=divergence,
        recorded_status=recorded_run.status,
        replay_status=status,
    )
    if divergence is not None and raise_on_divergence:
        raise ReplayDivergence(run_id, report.summary(), report)
    return report


def fork_rows(
    app: CompiledGraph[Any],
    run_id: str,
    *,
    at: int,
    update: dict[str, Any] | None = None,
    new_run_id: str | None = None,
    status: Literal["running", "queued"] = "running",
    config: dict[str, Any] | None = None,
) -> tuple[RunRecord, StepRecord, Any]:
    """The run row, step-0 row and state of a fork of ``run_id`` at step ``at``, patched
    with ``update`` (validated like a node's update); nothing is written. ``config``: the
    new run's options (default: the parent's, without its trace context)."""
    import time
    import uuid

    store = app.store
    parent = store.get_run(run_id)
    app.identity.check(parent)
    row = store.get_step(run_id, at)
    if row is None:
        head = store.latest_step(run_id)
        raise RunStateError(
            f"run {run_id} has steps 0..{head.step if head else 0}; cannot fork at step {at}"
        )
    schema = app.ir.schema
    state = app.state_at(run_id, at)
    if update:
        validated = schema.validate_update("fork", update, None)
        state = schema.apply(state, [("fork", validated)], at)
    new_id = new_run_id or uuid.uuid4().hex[:16]
    now = time.time()
    state_json = schema.dump_state(state)
    if config is None:
        config = {k: v for k, v in json.loads(parent.config).items() if k != "trace"}
    run = RunRecord(
        id=new_id,
        graph=app.name,
        fingerprint=app.fingerprint,
        graph_doc=app.graph_doc,
        status=status,
        input=state_json,
        parent_id=run_id,
        parent_step=at,
        config=json.dumps(config),
        created_at=now,
        updated_at=now,
        # a fork of a thread's turn starts a new thread (named after the fork), linked to
        # its origin by parent_id/parent_step; the origin thread is left as it was
        thread_id=new_id if parent.thread_id is not None else None,
        turn=1 if parent.thread_id is not None else None,
    )
    step0 = StepRecord(
        run_id=new_id,
        step=0,
        tasks=row.tasks,
        joins=row.joins,
        snapshot=state_json,
        created_at=now,
    )
    if not json.loads(row.tasks):
        run = run.model_copy(update={"status": "completed"})
    return run, step0, state


async def fork(
    app: CompiledGraph[Any],
    run_id: str,
    *,
    at: int,
    update: dict[str, Any] | None = None,
    reuse_effects: bool = False,
    new_run_id: str | None = None,
    on_event: Any = None,
) -> RunResult[Any]:
    """Start a new run from the state at step ``at`` of ``run_id``, patched with ``update``."""
    import uuid

    store = app.store
    parent = store.get_run(run_id)
    new_id = new_run_id or uuid.uuid4().hex[:16]
    stored = RunConfig.of_run(parent, app.max_steps, app.limits)
    obs = run_observer(
        run_id=new_id,
        graph=app.name,
        kind="fork",
        stored=stored.trace,
        subgraph=False,
        step=0,
        limits=stored.limits.model_dump(),
    )
    config = {k: v for k, v in json.loads(parent.config).items() if k != "trace"}
    if obs is not None and obs.traceparent:
        config["trace"] = {"traceparent": obs.traceparent}
    try:
        run, step0, state = fork_rows(
            app, run_id, at=at, update=update, new_run_id=new_id, config=config
        )
    except BaseException as e:
        if obs is not None:
            obs.close(e)
        raise
    state_json = step0.snapshot or ""
    try:
        store.create_run(run, step0)
    except BaseException as e:
        if obs is not None:
            obs.close(e)
        raise
    journal = None
    if reuse_effects:
        journal = JournalSource(
            store=store,
            strict=False,
            step_offset=at,
            run_map=lambda r: run_id + r[len(new_id) :] if r.startswith(new_id) else r,
        )
    point = ResumePoint(
        run=run,
        step=step0,
        state=state,
        config=RunConfig.of_run(run, app.max_steps, app.limits),
        progress=Progress(last_snapshot_bytes=len(state_json)),
        journal=journal,
        observer=obs,
    )
    return await app._execute(point, on_event)
