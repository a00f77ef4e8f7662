"""Observability: OpenTelemetry traces and metrics, and run context for ``logging``.

Tracing needs the optional extra (``pip install 'flowstate[otel]'``) and a tracer or
meter provider configured by the application; without them nothing of OpenTelemetry is
imported. See ``docs/guides/observability.md``.
"""

from ._hooks import (
    CAPTURE_ENV,
    EffectObserver,
    RunKind,
    RunObserver,
    configure,
    current_effect_observer,
    observe_events,
    run_observer,
    run_scope,
)
from ._logging import (
    LogContext,
    RunContextFilter,
    bind_log_context,
    get_logger,
    log_context,
    reset_log_context,
)

__all__ = [
    "CAPTURE_ENV",
    "EffectObserver",
    "LogContext",
    "RunContextFilter",
    "RunKind",
    "RunObserver",
    "bind_log_context",
    "configure",
    "current_effect_observer",
    "get_logger",
    "log_context",
    "observe_events",
    "reset_log_context",
    "run_observer",
    "run_scope",
]
