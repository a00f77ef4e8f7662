"""What flowstate's OpenTelemetry support costs on W1 (a chain of nodes, no persistence).

    python bench/otel_overhead.py [--nodes 200] [--reps 15]          # wall clock A/B
    python bench/otel_overhead.py --callgrind [--nodes 200]          # instruction counts

Modes, each in fresh processes:

- ``none``: OpenTelemetry is never imported (flowstate alone does not import it);
- ``imported``: ``opentelemetry.trace`` and ``.metrics`` imported (the extra installed, or
  the anthropic SDK loaded, which imports it), no provider configured: the case the
  5 % budget is about;
- ``traced``: an SDK ``TracerProvider`` and ``MeterProvider`` configured, spans going to an
  in-memory exporter (informational: what tracing every activation costs).

Wall clock: the modes run interleaved (``none, imported, traced`` then rotated) for
``--reps`` processes each; each process times 5 runs after a warm-up and reports µs per
node; the table shows medians. Callgrind: for each mode, two processes that perform 2 and
12 runs are counted (``valgrind --tool=callgrind``, total Ir); the difference over the 10
extra runs is the instruction count per run, with the start-up cost cancelled out.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("none", "imported", "traced")


def child(mode: str, runs: int, nodes: int, timed: bool) -> None:
    sys.path.insert(0, str(ROOT))
    if mode in ("imported", "traced"):
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    exporter = None
    if mode == "traced":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        tp = TracerProvider()
        exporter = InMemorySpanExporter()
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tp)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    import asyncio

    sys.path.insert(0, str(ROOT / "bench"))
    from w1_chain import _fs_builder

    from flowstate.checkpoints import InMemoryStore

    app = _fs_builder(nodes).compile(store=InMemoryStore(), max_steps=10 * nodes)

    async def go() -> list[float]:
        out = []
        await app.run({"count": 0})  # warm-up (and, traced, the lazy imports)
        for _ in range(runs):
            t = time.perf_counter()
            r = await app.run({"count": 0})
            out.append(time.perf_counter() - t)
            assert r.status == "completed" and r.state.count == nodes
            if exporter is not None:
                exporter.clear()
        return out

    times = asyncio.run(go())
    if timed:
        print(statistics.mean(times) / nodes * 1e6)


def spawn(mode: str, runs: int, nodes: int, timed: bool, prefix: list[str]) -> str:
    cmd = [*prefix, sys.executable, __file__, "--child", mode, str(runs), str(nodes)]
    if timed:
        cmd.append("--timed")
    # a fixed hash seed: dict and set layouts (and so instruction counts) repeat exactly
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return out.stdout + out.stderr


def wall(nodes: int, reps: int) -> None:
    got: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(reps):
        order = MODES[i % 3 :] + MODES[: i % 3]
        for m in order:
            got[m].append(float(spawn(m, 5, nodes, True, []).split()[0]))
    base = statistics.median(got["none"])
    print(f"W1(a) {nodes} nodes, {reps} processes per mode, 5 timed runs each (µs per node)")
    print("| mode | median | min | vs none |")
    print("|---|---|---|---|")
    for m in MODES:
        med = statistics.median(got[m])
        print(f"| {m} | {med:.1f} | {min(got[m]):.1f} | {100 * (med / base - 1):+.1f} % |")


def instructions(mode: str, runs: int, nodes: int) -> int:
    with tempfile.TemporaryDirectory() as d:
        out_file = Path(d) / "callgrind.out"
        text = spawn(
            mode,
            runs,
            nodes,
            False,
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"],
        )
    m = re.search(r"Collected : (\d+)", text)
    if m is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{text[-2000:]}")
    return int(m.group(1))


def callgrind(nodes: int) -> None:
    low, high = 2, 12
    print(
        f"W1(a) {nodes} nodes: instructions per run = (Ir of {high} runs - Ir of {low}) / "
        f"{high - low}"
    )
    print("| mode | Ir per run | Ir per node | vs none |")
    print("|---|---|---|---|")
    base = None
    for m in MODES:
        per_run = (instructions(m, high, nodes) - instructions(m, low, nodes)) / (high - low)
        base = base or per_run
        print(
            f"| {m} | {per_run:,.0f} | {per_run / nodes:,.0f} | "
            f"{100 * (per_run / base - 1):+.2f} % |"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs=3)
    p.add_argument("--timed", action="store_true")
    p.add_argument("--callgrind", action="store_true")
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--reps", type=int, default=15)
    a = p.parse_args()
    if a.child:
        mode, runs, nodes = a.child
        child(mode, int(runs), int(nodes), a.timed)
    elif a.callgrind:
        callgrind(a.nodes)
    else:
        wall(a.nodes, a.reps)


if __name__ == "__main__":
    main()
