"""One activation: call the node (with retries and a timeout) and validate its update.

An activation never commits and never touches its step's bookkeeping: it returns what
happened — ``Ready`` (an update to commit), ``Failure`` or ``Interrupted`` — and the step
(``_step.py``) settles it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from flowstate import events as ev
from flowstate.checkpoints import AttemptRecord, EffectRecord
from flowstate.errors import (
    EffectDivergence,
    FlowstateError,
    PayloadTooLarge,
    StateMutated,
    UpdateRejected,
)
from flowstate.observability import bind_log_context, reset_log_context

from ._context import (
    ContextEvent,
    EffectReported,
    Interrupted,
    NodeContext,
    TokenReported,
)
from ._isolation import check_mutations, isolate
from ._nodes import policy_for
from ._outcome import Failure, Ready
from ._plan import input_for
from ._rows import parse
from ._scope import RunScope
from ._subgraph import call_subgraph
from ._timers import record_pause
from ._types import END, Command, Send, Task

if TYPE_CHECKING:
    from ._nodes import NodeSpec
    from ._step import Step

__all__ = ["Activation"]

_PLAIN = frozenset({str, int, float, bool, type(None), list, dict, tuple})
"""Value types that are never awaitable: an update made of them skips the checks for
un-awaited coroutines."""


class Activation:
    """Runs one task of a step: its node, retried by its ``RetryPolicy``, bounded by its
    timeout, with a ``NodeContext`` whose journal and answers come from the store."""

    def __init__(self, scope: RunScope, step: Step, task: Task) -> None:
        self.scope = scope
        self.step = step
        """The step the task belongs to (read only: its number and input state)."""
        self.task = task

    async def run(self) -> Ready | Failure | Interrupted:
        scope, step, task = self.scope, self.step, self.task
        spec = scope.ir.nodes.get(task.node)
        if spec is None:
            return Failure(task, FlowstateError(f"node '{task.node}' is not in this graph"))
        started = time.time()
        attempt = 0
        # only a node with a ctx (or a subgraph) can journal effects or be interrupted:
        # the others get no context, and nothing is read for one
        has_ctx = bool(spec.ctx_param) or spec.subgraph is not None
        journal = self.load_journal() if has_ctx else {}
        answers = self.load_answers() if has_ctx else {}
        while True:
            attempt += 1
            if scope.listening:
                scope.emit(
                    ev.NodeStarted(
                        run_id=scope.run_id,
                        step=step.number,
                        node=task.node,
                        task_path=task.path,
                        attempt=attempt,
                    )
                )
            elif scope.log is not None:
                scope.log.node_started(step.number, task.node, task.path, attempt)
            ctx = self._context(attempt, journal, answers) if has_ctx else None
            logged = bind_log_context((scope.run_id, step.number, task.node, task.path, attempt))
            try:
                arg, source = self._input(spec)
                call = self._call(spec, ctx, arg)
                if scope.observer is None:
                    result = await call
                else:
                    result = await scope.observer.activation(
                        step.number, task.node, task.path, attempt, call
                    )
                update, goto = self._normalize(spec, result)
                if source is not None:
                    check_mutations(task.node, arg, source, set(update))
                if scope.custom_reducers and not scope.custom_reducers.isdisjoint(update):
                    # a user reducer may refuse the update: find out before committing it
                    scope.schema.apply(step.state, [(task.node, update)], step.number)
                raw = scope.schema.dump_update(task.node, update)
                limit = scope.config.limits.max_update_bytes
                if len(raw) > limit:
                    raise PayloadTooLarge(
                        f"the update of node '{task.node}'", len(raw), limit, "max_update_bytes"
                    )
                if ctx is None:
                    return Ready(task, update, raw, goto, started, {}, [])
                return Ready(task, update, raw, goto, started, ctx.usage, ctx.memory_ops)
            except Interrupted as i:
                self._record_interrupt(i)
                return i
            except asyncio.CancelledError:
                raise
            except Exception as e:
                err: Exception = e
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
                    delay = retry.delay(attempt, scope.rng.random())
                    self._record_attempt(attempt, err)
                    scope.emit(
                        ev.NodeRetrying(
                            run_id=scope.run_id,
                            step=step.number,
                            node=task.node,
                            task_path=task.path,
                            attempt=attempt,
                            error=f"{type(err).__name__}: {err}",
                            delay=delay,
                        )
                    )
                    await asyncio.sleep(delay)
                    continue
                self._record_attempt(attempt, err)
                scope.emit(
                    ev.NodeFailedEvent(
                        run_id=scope.run_id,
                        step=step.number,
                        node=task.node,
                        task_path=task.path,
                        error=f"{type(err).__name__}: {err}",
                    )
                )
                return Failure(task, err)
            finally:
                reset_log_context(logged)

    def _context(
        self, attempt: int, journal: dict[int, EffectRecord], answers: dict[int, str]
    ) -> NodeContext:
        scope, step, task = self.scope, self.step, self.task

        def report(event: ContextEvent) -> None:
            if isinstance(event, EffectReported):
                if event.diverged:
                    self._record_attempt(
                        0, EffectDivergence(event.seq, event.name, None, "changed")
                    )
                scope.emit(
                    ev.EffectRecorded(
                        run_id=scope.run_id,
                        step=step.number,
                        task_path=task.path,
                        seq=event.seq,
                        name=event.name,
                        replayed=event.replayed,
                        diverged=event.diverged,
                    )
                )
            elif isinstance(event, TokenReported):
                scope.emit(
                    ev.Token(
                        run_id=scope.run_id, step=step.number, task_path=task.path, text=event.text
                    )
                )

        return NodeContext(
            run_id=scope.run_id,
            step=step.number,
            task_path=task.path,
            node=task.node,
            attempt=attempt,
            journal=journal,
            answers=answers,
            record=scope.store.record_effect,
            emit=report,
            replay=scope.replay,
            cancelled=scope.cancelled,
            services=scope.services,
            max_effect_bytes=scope.config.limits.max_effect_bytes,
            memory_binding=scope.memory,
        )

    def load_journal(self) -> dict[int, EffectRecord]:
        """The effects this task recorded before (resume) or in the source journal."""
        scope, step, task = self.scope, self.step, self.task
        own: dict[int, EffectRecord] = {}
        if scope.resumed_step == step.number:  # a step this process planned has no journal yet
            own = {e.seq: e for e in scope.store.effects(scope.run_id, step.number, task.path)}
        if scope.journal is not None and not own:
            own = scope.journal.effects(scope.run_id, step.number, task.path)
        for e in own.values():  # storage corruption is reported as such, never as a node error
            parse("json", e.request, "effects", e.run_id, e.step)
            parse("json", e.response, "effects", e.run_id, e.step)
        return own

    def load_answers(self) -> dict[int, str]:
        """Answers to this task's interrupts, by interrupt sequence number."""
        scope, step, task = self.scope, self.step, self.task
        if scope.replay and scope.journal is not None:
            return scope.journal.answers(scope.run_id, step.number, task.path)
        if scope.resumed_step != step.number:  # only a resumed step can hold answers
            return {}
        answers = {
            i.seq: i.answer
            for i in scope.store.interrupts(scope.run_id, step.number)
            if i.task_path == task.path and i.answer is not None and i.seq >= 0
        }
        for a in answers.values():
            parse("json", a, "interrupts", scope.run_id, step.number)
        return answers

    def _record_interrupt(self, i: Interrupted) -> None:
        scope, step, task = self.scope, self.step, self.task
        record_pause(scope.store, scope.run_id, step.number, task.path, task.node, i)

    def _record_attempt(self, attempt: int, err: BaseException) -> None:
        scope, step, task = self.scope, self.step, self.task
        scope.store.record_attempt(
            AttemptRecord(
                run_id=scope.run_id,
                step=step.number,
                task_path=task.path,
                attempt=attempt,
                error=f"{type(err).__name__}: {err}"[:2000],
                created_at=time.time(),
            )
        )

    def _input(self, spec: NodeSpec) -> tuple[Any, Any]:
        """The node's input, and the shared values it was isolated from (None when the
        input is the node's own already: a Send payload, no input, a subgraph)."""
        task, schema, state = self.task, self.scope.schema, self.step.state
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
                arg = schema.model.model_validate(task.payload)
            return arg, None
        # every activation reads its own input: an in-place change never reaches the
        # step's state, a sibling or the stored run (see _isolation.py)
        view = input_for(spec.input_kind, spec.input_type, state)
        if view is state:
            return isolate(schema.model, state), state
        if isinstance(view, BaseModel):
            values = dict(view.__dict__)
            return isolate(type(view), values), values
        return view, None

    async def _call(self, spec: NodeSpec, ctx: NodeContext | None, arg: Any) -> Any:
        if spec.subgraph is not None:
            assert ctx is not None
            coro = call_subgraph(self, spec, ctx)
        else:
            args = () if spec.input_kind == "none" else (arg,)
            kwargs = {spec.ctx_param: ctx} if spec.ctx_param else {}
            if spec.is_async:
                coro = spec.fn(*args, **kwargs)
            else:
                # ctx.effect / ctx.interrupt called from the worker thread run on this loop
                if ctx is not None:
                    ctx._sync_loop = asyncio.get_running_loop()
                coro = asyncio.to_thread(spec.fn, *args, **kwargs)
        if spec.timeout is not None:
            return await asyncio.wait_for(coro, spec.timeout)
        return await coro

    def _normalize(self, spec: NodeSpec, raw: Any) -> tuple[dict[str, Any], list[str | Send]]:
        if type(raw) is dict and all(type(v) in _PLAIN for v in raw.values()):
            # the common case, checked without the ABC and awaitable tests below
            return self.scope.schema.validate_update(spec.name, raw, spec.writes), []
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
        return self.scope.schema.validate_update(spec.name, upd, spec.writes), goto
