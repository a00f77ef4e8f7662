"""Benchmark flowstate.memory: add and retrieve with 10,000 and 100,000 stored entries.

Standalone: ``python bench/bench_memory.py`` (``--quick`` for 1,000 and 10,000 entries and fewer
samples). Each size gets a fresh SQLite file (WAL, default synchronous=FULL) in a temporary
folder, filled through buffered ops committed in one transaction, then timed per call:

- ``add``: one episodic add, committed in its own ``BEGIN IMMEDIATE`` transaction (includes
  the lexical embedding and the fsync of the commit).
- ``retrieve warm``: top-10 by cosine over all entries, the snapshot cached in the process.
- ``retrieve after own add``: an add then a retrieve; the cache is updated in place.
- ``retrieve cold``: another connection committed first, so the snapshot is reloaded.
- ``working add`` (capacity 20), ``semantic update`` (same key), ``composite retrieve``.

Prints one table; the numbers depend on the disk (fsync) and the CPU.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowstate.memory import MemoryOp, MemoryStore  # noqa: E402

WORDS = (
    "agent user deploy build test failed passed report invoice customer order ship "
    "payment refund meeting friday monday email call note plan budget risk latency "
    "database cache index query server client token model prompt reply error retry "
    "timeout queue worker job schedule alert metric dashboard coffee tea lunch office"
).split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))


def timed(fn: Callable[[], object], samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def file_size(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def bench_size(n: int, samples: int, rng: random.Random) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "bench.db"
        store = MemoryStore(path)

        start = time.perf_counter()
        ops: list[MemoryOp] = []
        filler = store.memory("episodic", "bench", buffer=ops)
        for _ in range(n):
            filler.add(sentence(rng), importance=rng.random())
        planned = time.perf_counter()
        store.commit(ops)
        committed = time.perf_counter()
        per_entry = (committed - start) / n * 1e6
        rows.append(
            (
                f"fill {n:,} (buffered, 1 txn)",
                f"{committed - start:.2f} s total",
                f"{per_entry:.0f} µs/entry",
                f"plan {planned - start:.2f} s, commit {committed - planned:.2f} s",
            )
        )
        del ops

        episodic = store.memory("episodic", "bench")
        start = time.perf_counter()
        episodic.retrieve("warm up", k=10)
        rows.append(
            ("first retrieve (load)", f"{(time.perf_counter() - start) * 1000:.1f} ms", "", "")
        )

        def record(label: str, ms: list[float]) -> None:
            median, p95 = summary(ms)
            rows.append((label, f"{median:.2f} ms", f"{p95:.2f} ms", f"{len(ms)} calls"))

        record("add (own txn)", timed(lambda: episodic.add(sentence(rng)), samples))
        record(
            "retrieve warm k=10",
            timed(lambda: episodic.retrieve(sentence(rng), k=10), samples),
        )

        def add_then_retrieve() -> None:
            episodic.add(sentence(rng))
            episodic.retrieve(sentence(rng), k=10)

        record("add + retrieve", timed(add_then_retrieve, samples))

        other = MemoryStore(path)
        other_memory = other.memory("episodic", "bench")
        cold: list[float] = []
        for _ in range(max(3, samples // 20)):
            other_memory.add(sentence(rng))  # another connection commits: cache is stale
            start = time.perf_counter()
            episodic.retrieve(sentence(rng), k=10)
            cold.append((time.perf_counter() - start) * 1000.0)
        other.close()
        record("retrieve cold (reload)", cold)

        working = store.memory("working", "bench", capacity=20)
        record("working add (cap 20)", timed(lambda: working.add(sentence(rng)), samples))
        facts = store.memory("semantic", "bench")
        record(
            "semantic update same key",
            timed(lambda: facts.add(sentence(rng), key="k"), samples),
        )
        composite = store.composite("bench")
        composite.retrieve("warm up", k=10)
        record(
            "composite retrieve k=10",
            timed(lambda: composite.retrieve(sentence(rng), k=10), samples),
        )

        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        total = store.counts()[("bench", "episodic")]
        size = file_size(path)
        rows.append(
            (
                "database size",
                f"{size / 1e6:.1f} MB",
                f"{size / total:.0f} B/entry",
                f"{total:,} episodic entries",
            )
        )
        store.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k entries, fewer calls")
    parser.add_argument("--sizes", type=int, nargs="*", help="entry counts (overrides --quick)")
    parser.add_argument("--samples", type=int, help="timed calls per measurement")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [10_000, 100_000])
    samples = args.samples or (30 if args.quick else 200)
    rng = random.Random(args.seed)
    print(f"flowstate.memory benchmark: sizes {sizes}, {samples} calls per measurement")
    print("(median | p95 per call; HashingEmbedder dim 256; SQLite WAL, synchronous=FULL)\n")
    header = ("measurement", "median / value", "p95 / rate", "notes")
    for n in sizes:
        rows = bench_size(n, samples, rng)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        print(f"## {n:,} entries")
        print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        print("-+-".join("-" * w for w in widths))
        for row in rows:
            print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
