"""Runs (or resumes) one slow chain with a tracer provider that writes every span as a
JSON line the moment it ends; used by the SIGKILL trace test.

python tests/observability/otel_child.py DB RUN_ID SPANS_FILE
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tests.observability.graphs import slow_chain


class JsonLines(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as f:
            for s in spans:
                assert s.context is not None
                row = {
                    "name": s.name,
                    "trace_id": f"{s.context.trace_id:032x}",
                    "span_id": f"{s.context.span_id:016x}",
                    "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
                    "start": s.start_time,
                    "end": s.end_time,
                    "attributes": dict(s.attributes or {}),
                }
                f.write(json.dumps(row) + "\n")
                f.flush()
        return SpanExportResult.SUCCESS


def main() -> None:
    db, run_id, spans = sys.argv[1:4]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines(spans)))
    trace.set_tracer_provider(provider)  # the global provider, as an application would
    app = slow_chain(8, 0.15).compile(store=db)
    if app.store.find_run(run_id) is None:
        r = app.run_sync({}, run_id=run_id)
    else:
        r = app.resume_sync(run_id)
    provider.shutdown()
    print(r.status)


if __name__ == "__main__":
    main()
