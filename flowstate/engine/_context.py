"""``NodeContext``: what a node may do besides reading state — journaled effects,
interrupts, token events, and the identity of its activation."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pydantic_core
from pydantic import TypeAdapter

from flowstate._crashpoints import crash_point, effect_observers
from flowstate.checkpoints import EffectRecord
from flowstate.errors import EffectDivergence, EffectError, RunStateError
from flowstate.observability import current_effect_observer

from ._interrupts import UNSET

__all__ = [
    "ContextEvent",
    "EffectReported",
    "EffectSink",
    "Interrupted",
    "NodeContext",
    "TokenReported",
]

_NO_DEFAULT: Any = object()
"""Default of ``interrupt(default=)``: a timed-out interrupt returns ``TimedOut``."""


class Interrupted(BaseException):
    """Raised by ``ctx.interrupt`` to pause the run. A BaseException so that a node's
    ``except Exception`` cannot swallow it."""

    def __init__(self, seq: int, payload: str, wake_at: float | None = None) -> None:
        super().__init__(f"interrupt {seq}")
        self.seq = seq
        self.payload = payload
        self.wake_at = wake_at
        """When the run is due again (a timer's end, an interrupt's deadline), or None."""


@dataclass(frozen=True)
class EffectReported:
    """The node's context tells its step that effect ``seq`` was served or performed."""

    seq: int
    name: str
    replayed: bool
    """Served from the journal (True) or performed live (False)."""
    diverged: bool = False
    """Performed live because its request differed from the journal's (on resume)."""


@dataclass(frozen=True)
class TokenReported:
    """Streamed text reported by the node (``ctx.token``); not journaled."""

    text: str


ContextEvent = EffectReported | TokenReported
"""What a ``NodeContext`` reports to the activation that made it."""


class EffectSink(Protocol):
    """Where a context journals an effect: ``CheckpointStore.record_effect``."""

    def __call__(self, effect: EffectRecord, *, replace: bool = False) -> None: ...


class NodeContext:
    """Given to a node that declares a ``ctx`` parameter.

    Everything a node does that is not pure goes through ``await ctx.effect(...)`` so it
    is journaled: when the activation runs again (resume after a crash or an interrupt,
    replay) recorded results are served in order instead of being performed again.
    An effect interrupted between its call and its record runs again (at-least-once):
    pass ``ctx.idempotency_key()`` to external APIs so they can drop the duplicate.
    """

    def __init__(
        self,
        *,
        run_id: str,
        step: int,
        task_path: str,
        node: str,
        attempt: int,
        journal: dict[int, EffectRecord],
        answers: dict[int, str],
        record: EffectSink,
        emit: Callable[[ContextEvent], None],
        replay: bool = False,
        cancelled: Callable[[], bool] = lambda: False,
        services: dict[str, Any] | None = None,
        max_effect_bytes: int | None = None,
        memory_binding: Callable[[], Any] | None = None,
    ) -> None:
        self._memory_binding = memory_binding
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        """The run's event loop while a sync node runs in a worker thread."""
        self.memory_ops: list[Any] = []
        """Memory writes of this activation, committed with it."""
        self._max_effect_bytes = max_effect_bytes
        self.run_id = run_id
        """Id of the run this activation belongs to."""
        self.step = step
        self.task_path = task_path
        self.node = node
        self.attempt = attempt
        """1 on the first attempt, 2 on the first retry, …"""
        self._journal = journal
        self._answers = answers
        self._record = record
        self._emit = emit
        self._replay = replay
        self._cancelled = cancelled
        self._effect_seq = 0
        self._interrupt_seq = 0
        self.diverged: list[int] = []
        """Effects whose request differed from the journal on resume (they ran live)."""
        self.services: dict[str, Any] = services or {}
        self.usage: dict[str, int] = {}

    def idempotency_key(self, seq: int | None = None) -> str:
        """Stable key of an effect: ``run:task_path@step:seq`` (default: the next effect)."""
        s = self._effect_seq if seq is None else seq
        return f"{self.run_id}:{self.task_path}@{self.step}:{s}"

    def _in_worker_thread(self, what: str) -> bool:
        """True when called from a sync node's worker thread (no event loop here): the
        call then runs on the run's loop and returns its value, not a coroutine."""
        try:
            asyncio.get_running_loop()
            return False
        except RuntimeError:
            pass
        if self._sync_loop is None:
            raise RunStateError(
                f"ctx.{what} of node '{self.node}' was called outside the node's activation "
                "(no event loop in this thread): call it from the node while it runs"
            )
        return True

    def effect(
        self,
        name: str,
        fn: Callable[..., Any] | Callable[..., Awaitable[Any]],
        *args: Any,
        result_type: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Perform ``fn(*args, **kwargs)`` once and journal it; on re-runs, serve the record.

        Arguments and result must be JSON-compatible. The value returned is the result as
        it comes back from JSON (validated into ``result_type`` when given), identical on
        the first run, on resume and on replay.

        An async node writes ``await ctx.effect(...)``; a sync (``def``) node writes
        ``ctx.effect(...)`` and gets the value: the call runs on the run's event loop,
        through the same journal, while the node's thread waits.
        """
        coro = self._effect(name, fn, *args, result_type=result_type, **kwargs)
        if not self._in_worker_thread("effect"):
            return coro
        assert self._sync_loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._sync_loop).result()

    async def _effect(
        self,
        name: str,
        fn: Callable[..., Any] | Callable[..., Awaitable[Any]],
        *args: Any,
        result_type: Any = None,
        **kwargs: Any,
    ) -> Any:
        seq = self._effect_seq
        self._effect_seq += 1
        try:
            request = pydantic_core.to_json(
                {"args": list(args), "kwargs": kwargs}, fallback=None
            ).decode()
        except pydantic_core.PydanticSerializationError as e:
            raise EffectError(
                f"effect '{name}' (#{seq}) of node '{self.node}': its arguments are not JSON "
                f"({e}); pass plain data (str, numbers, lists, dicts, pydantic models)"
            ) from None
        rec = self._journal.get(seq)
        if rec is not None and rec.name == name and rec.request == request:
            if (rec.run_id, rec.step, rec.task_path) != (self.run_id, self.step, self.task_path):
                # served from another run's journal (a fork reusing its parent's): keep a
                # copy in this run's own journal, so it stays self-contained (large results
                # are stored once, by content hash)
                own = rec.model_copy(
                    update={"run_id": self.run_id, "step": self.step, "task_path": self.task_path}
                )
                self._record(own)
                self._journal[seq] = own
            self._emit(EffectReported(seq, name, replayed=True))
            return self._decode(rec.response, result_type)
        if self._replay:
            raise EffectDivergence(seq, name, rec, request)
        if rec is not None:
            self.diverged.append(seq)
        if self._cancelled():
            raise RunStateError(f"run {self.run_id} was cancelled; effect '{name}' not started")
        crash_point("effect.before_call")
        observer = current_effect_observer()
        if observer is None:
            result = await self._perform(fn, args, kwargs)
        else:
            result = await observer.effect(seq, name, args, self._perform(fn, args, kwargs))
        crash_point("effect.after_call")
        for observe in effect_observers:
            observe(self.run_id, self.step, self.task_path, seq, name)
        try:
            response = pydantic_core.to_json(result).decode()
        except pydantic_core.PydanticSerializationError as e:
            raise EffectError(
                f"effect '{name}' (#{seq}) of node '{self.node}' returned "
                f"{type(result).__name__}, which is not JSON ({e}); return plain data or a "
                "pydantic model"
            ) from None
        if self._max_effect_bytes is not None and len(response) > self._max_effect_bytes:
            from flowstate.errors import PayloadTooLarge

            raise PayloadTooLarge(
                f"the result of effect '{name}' (#{seq}) of node '{self.node}'",
                len(response),
                self._max_effect_bytes,
                "max_effect_bytes",
            )
        record = EffectRecord(
            run_id=self.run_id,
            step=self.step,
            task_path=self.task_path,
            seq=seq,
            name=name,
            request=request,
            response=response,
            created_at=time.time(),
        )
        self._record(record, replace=seq in self.diverged)
        self._journal[seq] = record
        self._emit(EffectReported(seq, name, replayed=False, diverged=seq in self.diverged))
        return self._decode(response, result_type)

    @staticmethod
    async def _perform(
        fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        result = await asyncio.to_thread(fn, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    @staticmethod
    def _decode(raw: str, result_type: Any) -> Any:
        if result_type is None:
            return json.loads(raw)
        return TypeAdapter(result_type).validate_json(raw)

    def interrupt(
        self, payload: Any = None, *, timeout: float | None = None, default: Any = UNSET
    ) -> Any:
        """Pause the run here and ask for a value; ``resume(run_id, value=...)`` (or
        ``answers={id: value}``) answers.

        The node runs again from its start on resume: effects before the interrupt come
        from the journal, and this call returns the value. Several interrupts in one node
        are answered in order. An async node writes ``await ctx.interrupt(...)``; a sync
        node writes ``ctx.interrupt(...)`` and gets the value.

        With ``timeout`` (seconds), the deadline is journaled; if nobody answers by then,
        whoever wakes due runs (``flowstate resume --due``, the service) resumes the run
        and this call returns ``default``, or a ``TimedOut`` when no default was given.
        """
        if timeout is not None:
            from ._timers import timed_interrupt

            coro = timed_interrupt(self, payload, timeout, default)
            if not self._in_worker_thread("interrupt"):
                return coro
            assert self._sync_loop is not None
            return asyncio.run_coroutine_threadsafe(coro, self._sync_loop).result()
        if self._in_worker_thread("interrupt"):
            return self._interrupt(payload)

        async def later() -> Any:
            return self._interrupt(payload)

        return later()

    def _interrupt(self, payload: Any) -> Any:
        seq = self._interrupt_seq
        self._interrupt_seq += 1
        if seq in self._answers:
            return json.loads(self._answers[seq])
        try:
            raw = pydantic_core.to_json(payload).decode()
        except pydantic_core.PydanticSerializationError as e:
            raise EffectError(f"interrupt payload of node '{self.node}' is not JSON: {e}") from None
        raise Interrupted(seq, raw)

    def sleep(self, seconds: float, *, hold: float | None = None) -> Any:
        """Wait ``seconds``, durably: the wait is journaled when it begins, so a resume (even
        in another process, after a crash) waits only what is left, and replay does not
        wait. Waits up to ``hold`` seconds (default ``HOLD_SECONDS``, 5) are awaited here;
        longer ones pause the run until it is due and free the process (``flowstate resume
        --due`` or the service wakes it). ``await ctx.sleep(...)`` in an async node."""
        from ._timers import sleep

        return self._timer(sleep(self, seconds=seconds, hold=hold), "sleep")

    def sleep_until(self, when: float | datetime, *, hold: float | None = None) -> Any:
        """``sleep`` until ``when``: seconds since the epoch or an aware datetime."""
        from ._timers import sleep

        return self._timer(sleep(self, until=when, hold=hold), "sleep_until")

    def _timer(self, coro: Any, what: str) -> Any:
        if not self._in_worker_thread(what):
            return coro
        assert self._sync_loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._sync_loop).result()

    @property
    def llm(self) -> Any:
        """The graph's model (``app.services["llm"]``), with every call journaled: on resume
        and replay the recorded response is served and the model is not called again."""
        from flowstate.llm import JournaledLLM

        model = self.services.get("llm")
        if model is None:
            raise RunStateError(
                f"node '{self.node}' used ctx.llm but the graph has no model: set "
                "app.services['llm'] = AnthropicLLM(...) (or ScriptedLLM([...]) offline)"
            )
        return JournaledLLM(model, self)

    @property
    def tools(self) -> Any:
        """The graph's tools (``app.services["tools"]``, a ToolRegistry), journaled."""
        from flowstate.llm import JournaledTools, ToolRegistry

        reg = self.services.get("tools")
        if reg is None:
            raise RunStateError(
                f"node '{self.node}' used ctx.tools but the graph has none: set "
                "app.services['tools'] = ToolRegistry([...])"
            )
        if not isinstance(reg, ToolRegistry):
            reg = ToolRegistry(reg)
        return JournaledTools(reg, self)

    def memory(self, namespace: str = "default", kind: str = "episodic", **options: Any) -> Any:
        """A memory (``working``, ``episodic``, ``semantic``, ``reflection``, or
        ``composite``) in ``namespace``, stored in the checkpoint database and shared by
        every run that names the same namespace. ``add`` is buffered and commits with this
        activation; ``await retrieve(query, k)`` is journaled."""
        from ._memory import NodeMemory, reflection_fn

        if self._memory_binding is None:
            raise RunStateError("ctx.memory is not available here")
        reader = self._memory_binding().reader
        if kind in ("reflection", "composite") and "llm" not in options:
            options.setdefault("complete_fn", reflection_fn(self))
        if kind == "composite":
            mem = reader.composite(namespace, buffer=self.memory_ops, **options)
        else:
            mem = reader.memory(kind, namespace, buffer=self.memory_ops, **options)
        return NodeMemory(self, mem, f"{kind}:{namespace}")

    def token(self, text: str) -> None:
        """Report streamed text (e.g. LLM tokens) as a live event; it is not journaled."""
        self._emit(TokenReported(text))

    def add_usage(self, input_tokens: int = 0, output_tokens: int = 0, **counts: int) -> None:
        """Add token counts to this activation's usage (committed with it). Other counts go
        by name, e.g. `cache_read_input_tokens=...` or per-model keys `input_tokens@model`."""
        self.usage["input_tokens"] = self.usage.get("input_tokens", 0) + int(input_tokens)
        self.usage["output_tokens"] = self.usage.get("output_tokens", 0) + int(output_tokens)
        for key, value in counts.items():
            if value:
                self.usage[key] = self.usage.get(key, 0) + int(value)
