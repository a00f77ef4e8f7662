"""An OpenTelemetry SDK pipeline per test: in-memory span exporter and metric reader,
handed to flowstate through ``configure`` (the global providers stay untouched)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext

from flowstate.observability import configure


def attrs(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes (the SDK types them as optional)."""
    return dict(span.attributes or {})


def sc(span: ReadableSpan) -> SpanContext:
    """A span's context (the SDK types it as optional; finished spans always have one)."""
    assert span.context is not None
    return span.context


def sc_link(link: Link) -> SpanContext:
    return link.context


def rec(record: Any, key: str) -> Any:
    """An attribute a logging filter added to a record."""
    return record.__dict__[key]


@dataclass
class Telemetry:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def one(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of every data point of ``metric`` (sum or histogram count)."""
        data = self.reader.get_metrics_data()
        out: list[tuple[dict[str, Any], Any]] = []
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != metric:
                        continue
                    for p in m.data.data_points:
                        value: Any = getattr(p, "value", None)
                        if value is None:
                            value = (getattr(p, "count"), getattr(p, "sum"))  # noqa: B009
                        out.append((dict(p.attributes or {}), value))
        return out

    def total(self, metric: str, **attrs: Any) -> float:
        return sum(
            v for a, v in self.points(metric) if all(a.get(k) == x for k, x in attrs.items())
        )


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    configure(tracer_provider=tp, meter_provider=mp)
    try:
        yield Telemetry(exporter, reader, tp)
    finally:
        configure()
        tp.shutdown()
        mp.shutdown()
