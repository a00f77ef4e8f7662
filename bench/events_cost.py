"""The cost of keeping a run's events in the store (issue 20, item 0c).

A chain of N nodes (as W1), run with the events table written (the default) and with it
switched off (``event_log`` replaced by one returning None), on an in-memory store, an
SQLite file and PostgreSQL (``FLOWSTATE_BENCH_PG``, default the local test server, on a
scratch schema). Reports the median per-activation wall time of each and the difference.

    PYTHONPATH=. python bench/events_cost.py [--nodes 50] [--reps 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder
from flowstate.checkpoints import open_store
from flowstate.engine import _execute


class Counter(BaseModel):
    count: int = 0


async def inc(s: Counter) -> dict[str, int]:
    return {"count": s.count + 1}


def chain(n: int) -> GraphBuilder[Counter]:
    g = GraphBuilder(Counter, name=f"events_cost_{n}")
    for i in range(n):
        g.add_node(f"n{i}", inc)
    g.add_edge(START, "n0")
    for i in range(n - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{n - 1}", END)
    return g


async def per_activation_us(app: Any, n: int, reps: int) -> float:
    await app.run({"count": 0})  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        r = await app.run({"count": 0})
        times.append(time.perf_counter() - t)
        assert r.status == "completed" and r.state.count == n
    return statistics.median(times) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    pg = os.environ.get("FLOWSTATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"fs_bench_{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp()
    stores = {
        "memory": "memory://",
        "sqlite": os.path.join(tmp, "bench.db"),
        "postgres": f"{pg}?schema={schema}",
    }
    original = _execute.event_log
    print(
        f"chain of {args.nodes} nodes, median of {args.reps} runs, os.cpu_count()={os.cpu_count()}"
    )
    print("| store | events off µs/activation | events on µs/activation | cost µs |")
    print("|---|---|---|---|")
    try:
        for name, spec in stores.items():
            store = open_store(spec)
            app = chain(args.nodes).compile(store=store)
            res = {}
            for on in (False, True, False, True):
                _execute.event_log = original if on else (lambda store, run_id: None)
                res.setdefault(on, []).append(
                    asyncio.run(per_activation_us(app, args.nodes, args.reps))
                )
            off_us, on_us = min(res[False]), min(res[True])
            print(f"| {name} | {off_us:.0f} | {on_us:.0f} | {on_us - off_us:+.0f} |")
            if hasattr(store, "close"):
                store.close()
    finally:
        _execute.event_log = original
        import psycopg

        with psycopg.connect(pg, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
