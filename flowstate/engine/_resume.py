"""Resume: take the run's lease, migrate its stored JSON if the state version moved on,
answer its pending interrupt, rebuild the step's input state and drive on from there."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from flowstate.errors import CorruptRowError, RunOwned, RunStateError

from ._interrupts import BREAKPOINT_SEQ, UNSET, answer_interrupts
from ._journal import JournalSource
from ._lease import local_owner_alive, new_owner, retire
from ._limits import Limits
from ._results import RunResult
from ._rows import parse

__all__ = ["ResumeMixin"]

S = TypeVar("S", bound=BaseModel)


class ResumeMixin(Generic[S]):
    """Part of ``CompiledGraph``: continuing a crashed, failed, paused or cancelled run."""

    async def _continue(
        self,
        run_id: str,
        *,
        value: Any = UNSET,
        answers: Mapping[str, Any] | None = None,
        allow_graph_change: bool = False,
        max_steps: int | None = None,
        limits: Limits | None = None,
        emit: Callable[[Any], None] | None = None,
        journal: JournalSource | None = None,
        wait: float | None = None,
        inherit: dict[str, Any] | None = None,
    ) -> RunResult[S]:
        store = self.store
        run = store.get_run(run_id)
        # still 'running' with no live owner (acquire below refuses a live one): the
        # process that ran it died, and this resume takes its lease over
        took_over = run.status == "running"
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
            run = store.update_run(run_id, status="running", error=None)
            committed = {}
            for w in store.writes(run_id, head.step, head.step + 1):
                committed[w.task_path] = self._committed_from(w, run_id)
            override: dict[str, Any] = {}
            if max_steps is not None:
                override["max_steps"] = max_steps
            if limits is not None:
                override["limits"] = limits.model_dump()
            if inherit:  # a subgraph's child run: its parent's limits and token count
                override.update(inherit)
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
            took_over=took_over,
        )
