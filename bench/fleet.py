"""Fleet throughput: runs per second with 1, 2 and 4 ``flowstate worker`` processes on one
PostgreSQL (20-node runs), with the machine's core count and the efficiency per core.

    python bench/fleet.py [--runs 200] [--workers 1,2,4] [--concurrency 4] [--out FILE]

For each worker count: a fresh schema, ``--runs`` runs of a 20-node chain (each node one
trivial async update, so the cost measured is the engine's and the database's: one commit
per activation) enqueued up front, then the workers started (real processes). The time
measured is in the store: from the first activation's start to the last one's end, over
every run, so process start-up is not counted. Speedup is runs/s over the 1-worker
figure; efficiency per core is speedup / min(workers, cores) — on a machine whose cores
also run PostgreSQL itself, 1.0 is not reachable.

The DSN is ``$FLOWSTATE_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
the schemas it creates (``fleet_bench_*``) are dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowstate import END, START, GraphBuilder  # noqa: E402

NODES = 20


class S(BaseModel):
    n: int = 0


def chain() -> Any:
    b = GraphBuilder(S, name="fleet_bench")
    prev = START
    for i in range(NODES):

        async def node(s: S) -> dict[str, int]:
            return {"n": s.n + 1}

        b.add_node(f"n{i}", node)
        b.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    b.add_edge(prev, END)
    return b.compile()


REGISTRY = [chain()]


def measure(dsn: str, workers: int, runs: int, concurrency: int) -> dict[str, Any]:
    import psycopg

    from flowstate.checkpoints import PostgresStore

    schema = f"fleet_bench_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(dsn, schema=schema)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        app = chain().bind(store)
        for _ in range(runs):
            app.enqueue({})
        load0 = os.getloadavg()[0]
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "flowstate.cli",
                        "worker",
                        "--db",
                        f"{dsn}?schema={schema}",
                        "--graphs",
                        "bench.fleet:REGISTRY",
                        "--concurrency",
                        str(concurrency),
                    ],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        count = store._q("SELECT count(*) FROM {runs} WHERE \"status\" = 'completed'")
        deadline = time.monotonic() + 600
        while int(store._read(count)[0][0]) < runs:
            if time.monotonic() > deadline:
                raise SystemExit(f"{workers} worker(s) did not finish {runs} runs in 600 s")
            time.sleep(0.2)
        (first, last, acts) = store._read(
            store._q('SELECT min("started_at"), max("finished_at"), count(*) FROM {writes}')
        )[0]
        load1 = os.getloadavg()[0]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        store.close()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    seconds = float(last) - float(first)
    return {
        "workers": workers,
        "runs": runs,
        "activations": int(acts),
        "seconds": seconds,
        "runs_per_s": runs / seconds,
        "activations_per_s": int(acts) / seconds,
        "load": (load0 + load1) / 2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="Also write the table here.")
    args = ap.parse_args()
    dsn = os.environ.get("FLOWSTATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    cores = os.cpu_count() or 1
    rows = []
    for w in (int(x) for x in args.workers.split(",")):
        print(f"{w} worker(s)...", file=sys.stderr, flush=True)
        rows.append(measure(dsn, w, args.runs, args.concurrency))
    base = rows[0]["runs_per_s"] / rows[0]["workers"] if rows else 1.0
    lines = [
        f"Fleet throughput, {time.strftime('%Y-%m-%d')}: {platform.platform()}, "
        f"{cores} cores (PostgreSQL on the same machine), Python "
        f"{platform.python_version()}; `python bench/fleet.py --runs {args.runs} "
        f"--workers {args.workers} --concurrency {args.concurrency}`; 20-node runs.",
        "",
        "| workers | runs | activations | seconds | runs/s | activations/s | speedup | "
        "efficiency per core | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speedup = r["runs_per_s"] / (base * 1)
        eff = speedup / min(r["workers"], cores)
        lines.append(
            f"| {r['workers']} | {r['runs']} | {r['activations']} | {r['seconds']:.2f} | "
            f"{r['runs_per_s']:.1f} | {r['activations_per_s']:.0f} | {speedup:.2f}x | "
            f"{eff:.2f} | {r['load']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
