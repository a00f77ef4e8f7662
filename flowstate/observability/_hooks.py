"""The seam between the engine and the telemetry: cheap when nothing is configured.

The engine calls ``run_observer`` once per run segment (a run, a resume, a replay, a
fork). Unless OpenTelemetry has been imported by the application (configuring a tracer
or meter provider needs that) it returns None without importing anything, and the engine
takes its unobserved path: a dictionary lookup per run is the whole cost. Only when a
provider is configured does ``_otel`` (and with it ``opentelemetry``) load.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from ._logging import bind_log_context, get_logger, reset_log_context

__all__ = [
    "EffectObserver",
    "RunKind",
    "RunObserver",
    "configure",
    "current_effect_observer",
    "observe_events",
    "run_observer",
    "run_scope",
]

T = TypeVar("T")

RunKind = Literal["start", "resume", "replay", "fork"]
"""What a run segment is: a new run, a resume of a stored one (same trace), an offline
replay or a fork (each its own trace, linked to the recorded run's)."""

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The GenAI instrumentations' switch for recording prompts and completions on spans."""

_log = get_logger("flowstate.engine")


@dataclass
class _Settings:
    enabled: bool | None = None
    capture_content: bool | None = None
    tracer_provider: Any = None
    meter_provider: Any = None


_settings = _Settings()


def configure(
    *,
    enabled: bool | None = None,
    capture_content: bool | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> None:
    """Set how flowstate reports to OpenTelemetry (process-wide).

    ``enabled``: None (the default) reports whenever the application has configured a
    tracer or meter provider; False never reports (and never imports OpenTelemetry);
    True reports whenever OpenTelemetry is installed (to the global providers).
    ``capture_content``: record prompts, completions and tool arguments/results on the
    GenAI spans. Off by default (they may hold personal data); None follows the
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` environment variable.
    ``tracer_provider`` / ``meter_provider``: report to these instead of the global
    providers (as OpenTelemetry instrumentations accept them). Each call sets every option:
    ``configure()`` restores the defaults.
    """
    _settings.enabled = enabled
    _settings.capture_content = capture_content
    _settings.tracer_provider = tracer_provider
    _settings.meter_provider = meter_provider


def capture_content() -> bool:
    if _settings.capture_content is not None:
        return _settings.capture_content
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes")


class RunObserver(Protocol):
    """What the engine calls on an observed run segment (implemented in ``_otel``)."""

    traceparent: str | None
    """W3C trace context of the run's span, stored with a new run so resumes continue it."""

    def on_event(self, event: Any) -> None: ...

    def attach(self) -> Any: ...

    def detach(self, token: Any) -> None: ...

    async def activation(
        self, step: int, node: str, task_path: str, attempt: int, call: Coroutine[Any, Any, T]
    ) -> T: ...

    def close(self, error: BaseException | None = None) -> None: ...


def run_observer(
    *,
    run_id: str,
    graph: str,
    kind: RunKind,
    stored: Mapping[str, Any] | None,
    subgraph: bool,
    step: int,
    limits: Mapping[str, Any] | None = None,
    took_over: bool = False,
) -> RunObserver | None:
    """An observer for one run segment, or None when nothing would be reported."""
    if _settings.enabled is False:
        return None
    explicit = _settings.tracer_provider is not None or _settings.meter_provider is not None
    if (
        _settings.enabled is None
        and not explicit
        and "opentelemetry.trace" not in sys.modules
        and "opentelemetry.metrics" not in sys.modules
    ):
        return None  # no provider can be configured without importing OpenTelemetry
    try:
        from . import _otel
    except ImportError:
        return None  # enabled=True without the extra: documented as a no-op
    return _otel.observer_for(
        run_id=run_id,
        graph=graph,
        kind=kind,
        stored=stored,
        subgraph=subgraph,
        step=step,
        limits=limits or {},
        took_over=took_over,
        force=_settings.enabled is True,
        capture=capture_content(),
        tracer_provider=_settings.tracer_provider,
        meter_provider=_settings.meter_provider,
    )


class EffectObserver(Protocol):
    """Wraps the effects of the activation it belongs to."""

    async def effect(
        self, seq: int, name: str, args: tuple[Any, ...], call: Coroutine[Any, Any, T]
    ) -> T: ...


_EFFECTS: ContextVar[EffectObserver | None] = ContextVar("flowstate_effect_observer", default=None)
"""Set by an observed activation for the effects its node performs."""


def current_effect_observer() -> EffectObserver | None:
    """The observer of the activation the calling code runs in, or None."""
    return _EFFECTS.get()


async def run_scope(call: Coroutine[Any, Any, T], run_id: str, observer: RunObserver | None) -> T:
    """Await a run's drive loop with the run bound for logging (and as the current span)."""
    token = bind_log_context((run_id, None, None, None, None))
    otel = observer.attach() if observer is not None else None
    try:
        return await call
    finally:
        if observer is not None:
            observer.detach(otel)
        reset_log_context(token)


def _log_event(e: Any) -> None:
    # the event's own run id wins over the bound context: RunStarted is emitted before
    # the run's context is bound, and a subgraph's events pass through its parent's sink
    kind = e.kind
    if kind == "node_retrying":
        _log.warning(
            "node '%s' failed (attempt %d), retrying in %.2fs: %s",
            *(e.node, e.attempt, e.delay, e.error),
            extra={"run_id": e.run_id, "step": e.step, "node": e.node},
        )
    elif kind == "node_failed":
        _log.warning(
            "node '%s' failed at step %d: %s",
            *(e.node, e.step, e.error),
            extra={"run_id": e.run_id, "step": e.step, "node": e.node},
        )
    elif kind == "run_finished":
        level = 30 if e.status == "failed" else 10 if e.status == "completed" else 20
        if _log.isEnabledFor(level):
            reason = f": {e.reason}" if e.reason else ""
            _log.log(level, "run %s %s%s", e.run_id, e.status, reason, extra={"run_id": e.run_id})
    elif kind == "run_started":
        if _log.isEnabledFor(10):
            how = f"resumed at step {e.step}" if e.resumed else "started"
            _log.debug(
                "run %s of graph '%s' %s", e.run_id, e.graph, how, extra={"run_id": e.run_id}
            )
    elif kind == "effect_recorded" and _log.isEnabledFor(10):
        how = "served from the journal" if e.replayed else "performed"
        _log.debug(
            "effect #%d '%s' %s",
            *(e.seq, e.name, how),
            extra={"run_id": e.run_id, "step": e.step, "task_path": e.task_path},
        )


def observe_events(
    sink: Callable[[Any], None], observer: RunObserver | None, run_id: str
) -> Callable[[Any], None]:
    """The event sink of run ``run_id``: logs the run's events that matter, feeds the
    observer, then passes each event on to ``sink`` (a subgraph's sink is its parent's,
    so each run logs only its own events)."""
    if observer is None:

        def logged(e: Any) -> None:
            if e.run_id == run_id:
                _log_event(e)
            sink(e)

        return logged
    on_event = observer.on_event

    def observed(e: Any) -> None:
        if e.run_id == run_id:
            _log_event(e)
            on_event(e)
        sink(e)

    return observed


def scope_effects(observer: EffectObserver) -> Any:
    return _EFFECTS.set(observer)


def reset_effects(token: Any) -> None:
    _EFFECTS.reset(token)
