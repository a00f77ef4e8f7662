"""OpenTelemetry spans and metrics of flowstate runs. Imported only when the application
has configured a tracer or meter provider (see ``_hooks.run_observer``).

Span tree of one run segment::

    flowstate.run <graph>                   one per run, resume, replay or fork
      flowstate.node <node>                 one per activation attempt
        flowstate.effect <name>             one per journaled effect
          chat <model>                      an LLM call (GenAI semantic conventions)
          execute_tool <tool>               a tool call (GenAI semantic conventions)
        flowstate.run <subgraph>            a subgraph's child run nests in its activation

A new run stores its span's W3C ``traceparent`` in its configuration; a resume (in any
process) starts its segment as a child of that span, so a crashed and resumed run is one
trace with the gap visible. Replays and forks start their own trace, linked to it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._hooks import RunKind, reset_effects, scope_effects

__all__ = ["RunTelemetry", "observer_for"]

T = TypeVar("T")

SCOPE = "flowstate"
"""Instrumentation scope name of every tracer and meter."""
LLM_EFFECT = "llm.complete"
"""Effect name of a journaled model call (``flowstate.llm.JournaledLLM``)."""
TOOL_EFFECT_PREFIX = "tool:"
"""Prefix of a journaled tool call's effect name (``flowstate.llm.JournaledTools``)."""

_PROPAGATOR = TraceContextTextMapPropagator()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("flowstate")
    except Exception:
        return "0"


class _Instruments:
    """The metric instruments of one meter provider."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.activations = meter.create_counter(
            "flowstate.activations", "{activation}", "Node activation attempts, by outcome"
        )
        self.failures = meter.create_counter(
            "flowstate.activation.failures", "{activation}", "Activations that failed for good"
        )
        self.retries = meter.create_counter(
            "flowstate.activation.retries", "{activation}", "Activation attempts retried"
        )
        self.activation_duration = meter.create_histogram(
            "flowstate.activation.duration", "s", "Duration of an activation attempt"
        )
        self.runs = meter.create_counter(
            "flowstate.runs", "{run}", "Run segments (runs, resumes, replays, forks) ended"
        )
        self.run_duration = meter.create_histogram(
            "flowstate.run.duration", "s", "Duration of a run segment in one process"
        )
        self.takeovers = meter.create_counter(
            "flowstate.lease.takeovers",
            "{run}",
            "Resumes that took over a run whose process died while running it",
        )
        self.effects = meter.create_counter(
            "flowstate.effects", "{effect}", "Journaled effects, performed or served"
        )
        self.tokens = meter.create_counter(
            "flowstate.llm.tokens", "{token}", "LLM tokens of calls performed live"
        )
        self.cost = meter.create_counter(
            "flowstate.llm.cost", "USD", "LLM cost of calls performed live (run's prices)"
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", "{token}", "Tokens per GenAI call (semconv)"
        )
        self.llm_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", "s", "Duration of a GenAI call (semconv)"
        )


_instruments: dict[int, tuple[Any, _Instruments]] = {}


def _instruments_for(provider: Any) -> _Instruments:
    hit = _instruments.get(id(provider))
    if hit is not None and hit[0] is provider:
        return hit[1]
    made = _Instruments(provider.get_meter(SCOPE, _version()))
    _instruments[id(provider)] = (provider, made)
    return made


def _tracing_configured(provider: Any) -> bool:
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _metrics_configured(provider: Any) -> bool:
    return type(provider).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")


def observer_for(
    *,
    run_id: str,
    graph: str,
    kind: RunKind,
    stored: Mapping[str, Any] | None,
    subgraph: bool,
    step: int,
    limits: Mapping[str, Any],
    took_over: bool,
    force: bool,
    capture: bool,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> RunTelemetry | None:
    tp = tracer_provider or trace.get_tracer_provider()
    mp = meter_provider or metrics.get_meter_provider()
    if not force and not _tracing_configured(tp) and not _metrics_configured(mp):
        return None
    return RunTelemetry(
        tp.get_tracer(SCOPE, _version()),
        _instruments_for(mp),
        run_id=run_id,
        graph=graph,
        kind=kind,
        stored=stored,
        subgraph=subgraph,
        step=step,
        limits=limits,
        capture=capture,
        took_over=took_over,
    )


def _extract(stored: Mapping[str, Any] | None) -> otel_context.Context | None:
    if not stored or not isinstance(stored.get("traceparent"), str):
        return None
    ctx = _PROPAGATOR.extract({"traceparent": stored["traceparent"]})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


@dataclass
class _Node:
    """An activation attempt's span while it is open."""

    span: Span
    node: str
    step: int
    started: float


@dataclass
class _EffectScope:
    """The observer of an activation's effects (current while its node runs)."""

    telemetry: RunTelemetry
    entry: _Node

    async def effect(
        self, seq: int, name: str, args: tuple[Any, ...], call: Coroutine[Any, Any, T]
    ) -> T:
        return await self.telemetry.effect(self.entry, seq, name, args, call)


class RunTelemetry:
    """Spans and metrics of one run segment; fed the run's events and wrapped around its
    activations and effects by the engine."""

    def __init__(
        self,
        tracer: trace.Tracer,
        instruments: _Instruments,
        *,
        run_id: str,
        graph: str,
        kind: RunKind,
        stored: Mapping[str, Any] | None,
        subgraph: bool,
        step: int,
        limits: Mapping[str, Any],
        capture: bool,
        took_over: bool = False,
    ) -> None:
        self.tracer = tracer
        self.m = instruments
        self.run_id = run_id
        self.graph = graph
        self.kind = kind
        self.capture = capture
        self.input_price = float(limits.get("input_price_per_mtok") or 0.0)
        self.output_price = float(limits.get("output_price_per_mtok") or 0.0)
        recorded = _extract(stored)
        links: list[Link] = []
        parent: otel_context.Context | None = None  # None: the current context
        current = trace.get_current_span().get_span_context()
        if kind == "resume" and recorded is not None and not subgraph:
            parent = recorded  # continue the run's trace, whoever resumes it
            if current.is_valid:
                links.append(Link(current, {"flowstate.link": "resumed_from"}))
        elif recorded is not None:
            # a subgraph resumed inside its parent's activation nests there; replays and
            # forks are runs of their own
            rel = {"resume": "continues", "replay": "replay_of", "fork": "fork_of"}.get(kind)
            links.append(
                Link(
                    trace.get_current_span(recorded).get_span_context(),
                    {"flowstate.link": rel or kind},
                )
            )
        self.span = tracer.start_span(
            f"flowstate.run {graph}",
            context=parent,
            kind=SpanKind.INTERNAL,
            links=links,
            attributes={
                "flowstate.run.id": run_id,
                "flowstate.graph": graph,
                "flowstate.run.kind": kind,
                "flowstate.run.start_step": step,
                "flowstate.run.subgraph": subgraph,
                "flowstate.run.took_over": took_over,
            },
        )
        if took_over:
            self.m.takeovers.add(1, {"flowstate.graph": graph})
        self.context = trace.set_span_in_context(self.span, parent)
        self.started = time.monotonic()
        self.status: str | None = None
        self._nodes: dict[str, _Node] = {}
        self._closed = False
        self._executing = False
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=self.context)
        self.traceparent: str | None = carrier.get("traceparent")

    # -- the run span -------------------------------------------------------------------

    def attach(self) -> Any:
        self._executing = True
        return otel_context.attach(self.context)

    def detach(self, token: Any) -> None:
        otel_context.detach(token)

    def close(self, error: BaseException | None = None) -> None:
        """End whatever is still open; with ``error`` the run segment ended by an exception
        that no RunFinished event reported (a crash in this process, a lost lease)."""
        if self._closed:
            return
        self._closed = True
        if error is not None and not self._executing:
            # the run row was never written (or the service's admission stopped the
            # engine there on purpose): nothing ran, nothing failed
            self.span.set_attribute("flowstate.run.status", "not_started")
            self.span.set_attribute("flowstate.run.stopped_by", type(error).__name__)
            self.span.end()
            return
        for path in list(self._nodes):
            self._end_node(path, "interrupted" if error is None else "crashed", error)
        status = self.status or ("crashed" if error is not None else "unknown")
        if error is not None and self.status is None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.span.set_attribute("flowstate.run.status", status)
        attrs = {
            "flowstate.graph": self.graph,
            "flowstate.run.status": status,
            "flowstate.run.kind": self.kind,
        }
        self.m.runs.add(1, attrs)
        self.m.run_duration.record(time.monotonic() - self.started, attrs)
        self.span.end()

    # -- events -------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        e = event
        kind = e.kind
        if kind == "node_started":
            self._start_node(e.step, e.node, e.task_path, e.attempt)
        elif kind == "node_finished":
            self._end_node(e.task_path, "committed", None)
        elif kind == "node_retrying":
            self.m.retries.add(1, {"flowstate.graph": self.graph, "flowstate.node": e.node})
            self._end_node(e.task_path, "retrying", e.error, delay=e.delay)
        elif kind == "node_failed":
            self.m.failures.add(1, {"flowstate.graph": self.graph, "flowstate.node": e.node})
            self._end_node(e.task_path, "failed", e.error)
        elif kind == "effect_recorded":
            if e.replayed:
                self._served_effect(e)
        elif kind == "run_finished":
            self.status = e.status
            if e.reason:
                self.span.set_attribute("flowstate.run.reason", e.reason)
            if e.status == "failed":
                self.span.set_status(Status(StatusCode.ERROR, e.reason or "failed"))
        elif kind == "run_started":
            self.span.set_attribute("flowstate.run.resumed", bool(e.resumed))

    # -- activations ----------------------------------------------------------------------

    def _start_node(self, step: int, node: str, path: str, attempt: int) -> _Node:
        old = self._nodes.pop(path, None)
        if old is not None:
            old.span.end()
        span = self.tracer.start_span(
            f"flowstate.node {node}",
            context=self.context,
            attributes={
                "flowstate.run.id": self.run_id,
                "flowstate.graph": self.graph,
                "flowstate.node": node,
                "flowstate.step": step,
                "flowstate.task_path": path,
                "flowstate.attempt": attempt,
            },
        )
        entry = _Node(span, node, step, time.monotonic())
        self._nodes[path] = entry
        return entry

    def _end_node(self, path: str, outcome: str, error: Any, *, delay: float | None = None) -> None:
        entry = self._nodes.pop(path, None)
        if entry is None:
            return
        span = entry.span
        span.set_attribute("flowstate.outcome", outcome)
        if delay is not None:
            span.set_attribute("flowstate.retry.delay", delay)
        if isinstance(error, BaseException):
            span.record_exception(error)
            error = f"{type(error).__name__}: {error}"
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, str(error)[:1000]))
            span.set_attribute("error.type", str(error).split(":", 1)[0])
        attrs = {
            "flowstate.graph": self.graph,
            "flowstate.node": entry.node,
            "flowstate.outcome": outcome,
        }
        self.m.activations.add(1, attrs)
        self.m.activation_duration.record(time.monotonic() - entry.started, attrs)
        span.end()

    async def activation(
        self, step: int, node: str, task_path: str, attempt: int, call: Coroutine[Any, Any, T]
    ) -> T:
        """Await the node's call with its activation span current (so spans the node makes,
        its effects and a subgraph's run nest under it)."""
        entry = self._nodes.get(task_path) or self._start_node(step, node, task_path, attempt)
        token = otel_context.attach(trace.set_span_in_context(entry.span, self.context))
        scope = scope_effects(_EffectScope(self, entry))
        try:
            return await call
        except Exception as e:
            entry.span.record_exception(e)  # the failure/retry event ends the span
            raise
        except BaseException as e:  # an interrupt, a cancellation, a simulated crash
            name = type(e).__name__
            self._end_node(task_path, "interrupted" if name == "Interrupted" else "cancelled", None)
            raise
        finally:
            reset_effects(scope)
            otel_context.detach(token)

    # -- effects ----------------------------------------------------------------------------

    def _effect_attrs(self, entry: _Node, seq: int, name: str, replayed: bool) -> dict[str, Any]:
        return {
            "flowstate.run.id": self.run_id,
            "flowstate.node": entry.node,
            "flowstate.step": entry.step,
            "flowstate.effect.seq": seq,
            "flowstate.effect.name": name,
            "flowstate.effect.replayed": replayed,
        }

    def _served_effect(self, e: Any) -> None:
        entry = self._nodes.get(e.task_path)
        if entry is None:
            return
        ctx = trace.set_span_in_context(entry.span, self.context)
        span = self.tracer.start_span(
            f"flowstate.effect {e.name}",
            context=ctx,
            attributes=self._effect_attrs(entry, e.seq, e.name, True),
        )
        span.end()
        self.m.effects.add(
            1,
            {
                "flowstate.graph": self.graph,
                "flowstate.effect.name": e.name,
                "flowstate.effect.replayed": True,
            },
        )

    async def effect(
        self,
        entry: _Node,
        seq: int,
        name: str,
        args: tuple[Any, ...],
        call: Coroutine[Any, Any, T],
    ) -> T:
        """Await an effect performed live, under its span (and a GenAI span for LLM and
        tool calls)."""
        span = self.tracer.start_span(
            f"flowstate.effect {name}",
            context=trace.set_span_in_context(entry.span, self.context),
            attributes=self._effect_attrs(entry, seq, name, False),
        )
        ctx = trace.set_span_in_context(span, self.context)
        request = args[0] if args and isinstance(args[0], dict) else {}
        genai: Span | None = None
        started = time.monotonic()
        if name == LLM_EFFECT:
            genai = self._llm_span(ctx, request)
        elif name.startswith(TOOL_EFFECT_PREFIX):
            genai = self._tool_span(ctx, name[len(TOOL_EFFECT_PREFIX) :], request)
        token = otel_context.attach(trace.set_span_in_context(genai or span, ctx))
        try:
            result = await call
        except BaseException as e:
            for s in (genai, span):
                if s is not None:
                    s.record_exception(e)
                    s.set_status(Status(StatusCode.ERROR, f"{type(e).__name__}: {e}"[:1000]))
                    s.set_attribute("error.type", type(e).__name__)
            if genai is not None and name == LLM_EFFECT:
                self.m.llm_duration.record(
                    time.monotonic() - started,
                    {**self._llm_metric_attrs(request), "error.type": type(e).__name__},
                )
            raise
        else:
            if genai is not None:
                if name == LLM_EFFECT:
                    self._llm_result(genai, entry, request, result, time.monotonic() - started)
                else:
                    self._tool_result(genai, result)
        finally:
            otel_context.detach(token)
            if genai is not None:
                genai.end()
            span.end()
            self.m.effects.add(
                1,
                {
                    "flowstate.graph": self.graph,
                    "flowstate.effect.name": name,
                    "flowstate.effect.replayed": False,
                },
            )
        return result

    # -- GenAI (LLM and tool calls) -----------------------------------------------------------

    @staticmethod
    def _system(model: str | None) -> str:
        return "anthropic" if model and model.startswith("claude") else "_OTHER"

    def _llm_metric_attrs(self, request: Mapping[str, Any]) -> dict[str, Any]:
        model = request.get("model") or "unknown"
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": self._system(model),
            "gen_ai.request.model": model,
        }

    def _llm_span(self, ctx: otel_context.Context, request: Mapping[str, Any]) -> Span:
        model = request.get("model")
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": self._system(model),
            "gen_ai.provider.name": self._system(model),
            "gen_ai.request.max_tokens": request.get("max_tokens", 0),
        }
        if model:
            attrs["gen_ai.request.model"] = model
        if request.get("temperature") is not None:
            attrs["gen_ai.request.temperature"] = request["temperature"]
        if self.capture:
            attrs["gen_ai.input.messages"] = json.dumps(request.get("messages", []))
            if request.get("system"):
                attrs["gen_ai.system_instructions"] = json.dumps(
                    [{"type": "text", "content": request["system"]}]
                )
            if request.get("tools"):
                attrs["gen_ai.tool.definitions"] = json.dumps(request["tools"])
        return self.tracer.start_span(
            f"chat {model}" if model else "chat",
            context=ctx,
            kind=SpanKind.CLIENT,
            attributes=attrs,
        )

    def _llm_result(
        self,
        span: Span,
        entry: _Node,
        request: Mapping[str, Any],
        result: Any,
        seconds: float,
    ) -> None:
        if not isinstance(result, Mapping):
            return
        usage = result.get("usage") or {}
        tin, tout = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        span.set_attribute("gen_ai.usage.input_tokens", tin)
        span.set_attribute("gen_ai.usage.output_tokens", tout)
        for key, attr in (
            ("cache_read_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
            ("cache_creation_input_tokens", "gen_ai.usage.cache_creation.input_tokens"),
        ):
            if usage.get(key) is not None:
                span.set_attribute(attr, int(usage[key]))
        if result.get("model"):
            span.set_attribute("gen_ai.response.model", result["model"])
        if result.get("stop_reason"):
            span.set_attribute("gen_ai.response.finish_reasons", [result["stop_reason"]])
        if result.get("id"):
            span.set_attribute("gen_ai.response.id", result["id"])
        cost = self._cost(usage, tin, tout)
        if cost is not None:
            span.set_attribute("flowstate.llm.cost_usd", cost)
        if self.capture:
            span.set_attribute(
                "gen_ai.output.messages",
                json.dumps([{"role": "assistant", "content": result.get("content", [])}]),
            )
        base = self._llm_metric_attrs(request)
        self.m.llm_duration.record(seconds, base)
        where = {**base, "flowstate.graph": self.graph, "flowstate.node": entry.node}
        for ttype, n in (("input", tin), ("output", tout)):
            self.m.token_usage.record(n, {**base, "gen_ai.token.type": ttype})
            self.m.tokens.add(n, {**where, "gen_ai.token.type": ttype})
        if cost is not None:
            self.m.cost.add(cost, where)

    def _cost(self, usage: Mapping[str, Any], tin: int, tout: int) -> float | None:
        for key in ("cost_usd", "cost"):
            if isinstance(usage.get(key), int | float):
                return float(usage[key])
        if self.input_price or self.output_price:
            return (tin * self.input_price + tout * self.output_price) / 1e6
        return None

    def _tool_span(self, ctx: otel_context.Context, tool: str, request: Mapping[str, Any]) -> Span:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "function",
        }
        if request.get("id"):
            attrs["gen_ai.tool.call.id"] = request["id"]
        if self.capture and "input" in request:
            attrs["gen_ai.tool.call.arguments"] = json.dumps(request["input"])
        return self.tracer.start_span(
            f"execute_tool {tool}", context=ctx, kind=SpanKind.INTERNAL, attributes=attrs
        )

    def _tool_result(self, span: Span, result: Any) -> None:
        if not isinstance(result, Mapping):
            return
        if result.get("is_error"):
            span.set_status(Status(StatusCode.ERROR, str(result.get("content", ""))[:1000]))
            span.set_attribute("error.type", "tool_error")
        if self.capture and "content" in result:
            span.set_attribute("gen_ai.tool.call.result", json.dumps(result["content"]))
