"""One activation: call the node (with retries and a timeout), validate its update, and
commit it — with the step's close when it is the step's last activation."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from flowstate.checkpoints import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    StepRecord,
    WriteRecord,
)
from flowstate.errors import FlowstateError, PayloadTooLarge, StateMutated, UpdateRejected
from flowstate.observability import RunObserver, bind_log_context, reset_log_context

from . import _events as ev
from ._context import EffectDivergence, Interrupted, NodeContext
from ._isolation import check_mutations, isolate
from ._nodes import policy_for
from ._outcome import Committed, Failure, goto_to_json
from ._plan import input_for
from ._rows import parse
from ._subgraph import call_subgraph
from ._types import END, Command, Send, Task

if TYPE_CHECKING:
    from ._nodes import NodeSpec

__all__ = ["ActivationMixin"]


class ActivationMixin:
    """The per-activation half of ``Execution`` (see _scheduler.py for the step loop)."""

    # Uses the attributes Execution sets up (store, ir, schema, run_id, step, tasks,
    # committed, limits, journal, ...); kept apart only to keep each module one concept.

    observer: RunObserver | None = None
    """Telemetry of this run segment (flowstate.observability), or None when off."""

    async def _limited(self, task: Task) -> Committed | Failure | Interrupted:
        if self._slots is None:
            return await self._activate(task)
        async with self._slots:
            return await self._activate(task)

    async def _activate(self, task: Task) -> Committed | Failure | Interrupted:
        spec = self.ir.nodes.get(task.node)
        if spec is None:
            return Failure(task, FlowstateError(f"node '{task.node}' is not in this graph"))
        started = time.time()
        attempt = 0
        journal = self._load_journal(task)
        answers = self._load_answers(task)
        while True:
            attempt += 1
            if self.listening:
                self.emit(
                    ev.NodeStarted(
                        run_id=self.run_id,
                        step=self.step,
                        node=task.node,
                        task_path=task.path,
                        attempt=attempt,
                    )
                )
            ctx = self._context(task, attempt, journal, answers)
            logged = bind_log_context((self.run_id, self.step, task.node, task.path, attempt))
            try:
                arg, source = self._input(spec, task)
                call = self._call(spec, task, ctx, arg)
                if self.observer is None:
                    result = await call
                else:
                    result = await self.observer.activation(
                        self.step, task.node, task.path, attempt, call
                    )
                update, goto = self._normalize(spec, result)
                if source is not None:
                    check_mutations(task.node, arg, source, set(update))
                if self._custom and not self._custom.isdisjoint(update):
                    # a user reducer may refuse the update: find out before committing it
                    self.schema.apply(self.state, [(task.node, update)], self.step)
                raw = self.schema.dump_update(task.node, update)
                if len(raw) > self.limits.max_update_bytes:
                    raise PayloadTooLarge(
                        f"the update of node '{task.node}'",
                        len(raw),
                        self.limits.max_update_bytes,
                        "max_update_bytes",
                    )
                break
            except Interrupted as i:
                self._record_interrupt(task, i)
                self._interrupts.append((task, i))
                return i
            except asyncio.CancelledError:
                raise
            except Exception as e:
                err = e
                if isinstance(e, TimeoutError) and spec.timeout is not None:
                    err = TimeoutError(
                        f"node '{task.node}' overran its timeout of {spec.timeout}s and was "
                        "cancelled; raise timeout= or make the node faster"
                    )
                retry = policy_for(spec.retry, e) if spec.retry else None
                if (
                    retry is not None
                    and attempt < retry.max_attempts
                    and not isinstance(e, UpdateRejected | PayloadTooLarge | StateMutated)
                    and not isinstance(e, EffectDivergence)
                ):
                    delay = retry.delay(attempt, self.rng.random())
                    self._record_attempt(task, attempt, err)
                    self.emit(
                        ev.NodeRetrying(
                            run_id=self.run_id,
                            step=self.step,
                            node=task.node,
                            task_path=task.path,
                            attempt=attempt,
                            error=f"{type(err).__name__}: {err}",
                            delay=delay,
                        )
                    )
                    await asyncio.sleep(delay)
                    continue
                self._record_attempt(task, attempt, err)
                self.emit(
                    ev.NodeFailed_(
                        run_id=self.run_id,
                        step=self.step,
                        node=task.node,
                        task_path=task.path,
                        error=f"{type(err).__name__}: {err}",
                    )
                )
                self._remaining -= 1
                self._failed = True
                return Failure(task, err)
            finally:
                reset_log_context(logged)
        return self._commit(task, spec, update, raw, goto, started, ctx)

    def _commit(
        self,
        task: Task,
        spec: NodeSpec,
        update: dict[str, Any],
        raw: str,
        goto: list[str | Send],
        started: float,
        ctx: NodeContext,
    ) -> Committed:
        seq = self._seq_of(task.path)
        write = WriteRecord(
            run_id=self.run_id,
            step=self.step,
            task_path=task.path,
            node=task.node,
            seq=seq,
            update=raw,
            goto=goto_to_json(goto) if goto else "[]",
            usage=json.dumps(ctx.usage) if ctx.usage else "{}",
            started_at=started,
            finished_at=time.time(),
        )
        if self.journal is not None and self.journal.check is not None:
            self.journal.check(self.run_id, write, update)
        c = Committed(task, write, update, goto)
        self.committed[task.path] = c
        self._remaining -= 1
        step_row: StepRecord | None = None
        run_fields: dict[str, Any] | None = None
        if self._remaining == 0 and not self._failed and not self._interrupts:
            try:
                step_row, run_fields = self._close_step(standalone=False)
            except Exception as e:  # a write conflict or a router error: fail after commit
                self._close_error = e
        try:
            if ctx.memory_ops:
                ops = list(ctx.memory_ops)
                apply = self.app._memory_binding().reader.apply_ops
                self.store.commit(
                    self.run_id,
                    writes=[write],
                    step=step_row,
                    run_fields=run_fields,
                    hook=lambda conn: apply(conn, ops),
                )
            else:
                self.store.commit(self.run_id, writes=[write], step=step_row, run_fields=run_fields)
        except BaseException:
            self.committed.pop(task.path, None)
            self._closed = None
            raise
        self.activations += 1
        self.visits[task.node] = self.visits.get(task.node, 0) + 1
        if ctx.usage:
            self.tokens_in += ctx.usage.get("input_tokens", 0)
            self.tokens_out += ctx.usage.get("output_tokens", 0)
        self.bytes_since_snapshot += len(raw)
        if self.listening:
            self.emit(
                ev.NodeFinished(
                    run_id=self.run_id,
                    step=self.step,
                    node=task.node,
                    task_path=task.path,
                    update=json.loads(raw),
                    duration_ms=(write.finished_at - started) * 1000,
                    usage=dict(ctx.usage),
                )
            )
        return c

    def _context(
        self, task: Task, attempt: int, journal: dict[int, EffectRecord], answers: dict[int, str]
    ) -> NodeContext:
        def emit(item: Any) -> None:
            if item[0] == "effect":
                _, seq, name, replayed, *rest = item
                diverged = bool(rest and rest[0])
                if diverged:
                    self._record_attempt(task, 0, EffectDivergence(seq, name, None, "changed"))
                self.emit(
                    ev.EffectRecorded(
                        run_id=self.run_id,
                        step=self.step,
                        task_path=task.path,
                        seq=seq,
                        name=name,
                        replayed=replayed,
                        diverged=diverged,
                    )
                )
            elif item[0] == "token":
                self.emit(
                    ev.Token(run_id=self.run_id, step=self.step, task_path=task.path, text=item[1])
                )

        return NodeContext(
            run_id=self.run_id,
            step=self.step,
            task_path=task.path,
            node=task.node,
            attempt=attempt,
            journal=journal,
            answers=answers,
            record=self.store.record_effect,
            emit=emit,
            replay=self.replay,
            cancelled=self._cancel_seen,
            services=self.app.services,
            max_effect_bytes=self.limits.max_effect_bytes,
            memory_binding=self.app._memory_binding,
        )

    def _load_journal(self, task: Task) -> dict[int, EffectRecord]:
        own: dict[int, EffectRecord] = {}
        if self.resumed_step == self.step:  # a step this process planned has no journal yet
            own = {e.seq: e for e in self.store.effects(self.run_id, self.step, task.path)}
        if self.journal is not None and not own:
            own = self.journal.effects(self.run_id, self.step, task.path)
        for e in own.values():  # storage corruption is reported as such, never as a node error
            parse("json", e.request, "effects", e.run_id, e.step)
            parse("json", e.response, "effects", e.run_id, e.step)
        return own

    def _cancel_seen(self) -> bool:
        if self._cancel_requested:
            return True
        if "cancel" in self.store.signals(self.run_id):
            self._cancel_requested = True
        return self._cancel_requested

    def _load_answers(self, task: Task) -> dict[int, str]:
        if self.replay and self.journal is not None:
            return self.journal.answers(self.run_id, self.step, task.path)
        if self.resumed_step != self.step:  # only a resumed step can hold answers
            return {}
        answers = {
            i.seq: i.answer
            for i in self.store.interrupts(self.run_id, self.step)
            if i.task_path == task.path and i.answer is not None and i.seq >= 0
        }
        for a in answers.values():
            parse("json", a, "interrupts", self.run_id, self.step)
        return answers

    def _record_interrupt(self, task: Task, i: Interrupted) -> None:
        self.store.record_interrupt(
            InterruptRecord(
                run_id=self.run_id,
                step=self.step,
                task_path=task.path,
                seq=i.seq,
                payload=i.payload,
                created_at=time.time(),
            ),
            {"status": "paused", "error": f"interrupt in '{task.node}'", "head_step": self.step},
        )

    def _record_attempt(self, task: Task, attempt: int, err: BaseException) -> None:
        self.store.record_attempt(
            AttemptRecord(
                run_id=self.run_id,
                step=self.step,
                task_path=task.path,
                attempt=attempt,
                error=f"{type(err).__name__}: {err}"[:2000],
                created_at=time.time(),
            )
        )

    def _input(self, spec: NodeSpec, task: Task) -> tuple[Any, Any]:
        """The node's input, and the shared values it was isolated from (None when the
        input is the node's own already: a Send payload, no input, a subgraph)."""
        if spec.subgraph is not None or spec.input_kind == "none":
            return None, None
        if task.send:
            arg = task.payload
            if spec.payload_adapter is not None:
                try:
                    arg = spec.payload_adapter.validate_python(task.payload)
                except ValidationError as e:
                    raise UpdateRejected(
                        task.node,
                        None,
                        f"the Send payload does not fit its input annotation: {e}",
                    ) from None
            elif spec.input_kind == "state":
                arg = self.schema.model.model_validate(task.payload)
            return arg, None
        # every activation reads its own input: an in-place change never reaches the
        # step's state, a sibling or the stored run (see _isolation.py)
        view = input_for(spec.input_kind, spec.input_type, self.state)
        if view is self.state:
            return isolate(self.schema.model, self.state), self.state
        if isinstance(view, BaseModel):
            values = dict(view.__dict__)
            return isolate(type(view), values), values
        return view, None

    async def _call(self, spec: NodeSpec, task: Task, ctx: NodeContext, arg: Any) -> Any:
        if spec.subgraph is not None:
            coro = call_subgraph(self, spec, task, ctx)  # type: ignore[arg-type]
        else:
            args = () if spec.input_kind == "none" else (arg,)
            kwargs = {spec.ctx_param: ctx} if spec.ctx_param else {}
            if spec.is_async:
                coro = spec.fn(*args, **kwargs)
            else:
                # ctx.effect / ctx.interrupt called from the worker thread run on this loop
                ctx._sync_loop = asyncio.get_running_loop()
                coro = asyncio.to_thread(spec.fn, *args, **kwargs)
        if spec.timeout is not None:
            return await asyncio.wait_for(coro, spec.timeout)
        return await coro

    def _normalize(self, spec: NodeSpec, raw: Any) -> tuple[dict[str, Any], list[str | Send]]:
        goto: list[str | Send] = []
        if isinstance(raw, Command):
            g = raw.goto
            items = g if isinstance(g, list | tuple) else [g]
            for it in items:
                target = it.node if isinstance(it, Send) else it
                if target != END and target not in spec.goto:
                    raise UpdateRejected(
                        spec.name,
                        None,
                        f"its Command goes to '{target}', which was not declared: "
                        f"add_node('{spec.name}', ..., goto=[..., '{target}'])",
                    )
                goto.append(it)
            raw = raw.update
        if inspect.isawaitable(raw):
            close = getattr(raw, "close", None)
            if close is not None:
                close()  # no "never awaited" warning: the error below says it
            raise UpdateRejected(
                spec.name,
                None,
                "it returned a coroutine, not an update: an async call (ctx.llm, ctx.tools, "
                "an async function) must be awaited, so make the node `async def` and "
                "`await` it",
            )
        if raw is None:
            upd: Mapping[str, Any] = {}
        elif isinstance(raw, BaseModel):
            upd = {k: getattr(raw, k) for k in raw.model_fields_set}
        elif isinstance(raw, Mapping):
            upd = raw
        else:
            raise UpdateRejected(
                spec.name,
                None,
                f"it returned {type(raw).__name__}; return a dict of state fields, a model, "
                "a Command, or None",
            )
        for key, value in upd.items():
            if inspect.isawaitable(value):
                close = getattr(value, "close", None)
                if close is not None:
                    close()
                raise UpdateRejected(
                    spec.name,
                    key,
                    "its value is an un-awaited coroutine: `await` the async call that "
                    "produced it (in an `async def` node), or call a sync function",
                )
        return self.schema.validate_update(spec.name, upd, spec.writes), goto
