"""Benchmark flowstate.memory: add and retrieve with 10,000 and 100,000 stored entries, on
SQLite and on PostgreSQL.

Standalone: ``python bench/bench_memory.py`` (``--quick`` for 1,000 and 10,000 entries and fewer
samples; ``--backend sqlite|postgres|both``; ``--dsn`` for the server, default
``postgresql://postgres@127.0.0.1:5432/test``). Each size gets a fresh SQLite file (WAL,
default synchronous=FULL) in a temporary folder, or a fresh Postgres schema (dropped after),
filled through buffered ops committed in one transaction, then timed per call:

- ``add``: one episodic add, committed in its own write transaction (includes the lexical
  embedding and the commit).
- ``retrieve warm``: top-10 by cosine over all entries, the snapshot cached in the process
  (Postgres: plus one round trip that reads the namespace's revision).
- ``add + retrieve``: an add then a retrieve; the retrieve catches up with the one new row.
- ``retrieve after another process's add``: another store object (connection) committed
  first; the reader fetches only the rows and tombstones after its revision (issue 21: this
  was a reload of the whole namespace, 0.9 s at 100k on SQLite).
- ``full load``: a new store's first retrieve, which loads the namespace's snapshot.
- ``working add`` (capacity 20), ``semantic update`` (same key), ``composite retrieve``.

Search is numpy over the cached float32 snapshot on both backends (pgvector is not
packaged for this Debian release). Prints one table per backend and size; the numbers
depend on the disk (fsync), the CPU and, for Postgres, the server's settings.
"""

from __future__ import annotations

import argparse
import os
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

from flowstate.memory import MemoryOp, MemoryStore, PostgresMemoryStore  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"

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


class Backend:
    """A fresh database for one size: ``open()`` gives another store object on it."""

    def __init__(self, kind: str, n: int, dsn: str) -> None:
        self.kind, self.dsn = kind, dsn
        self._dir = tempfile.TemporaryDirectory()
        self.path = pathlib.Path(self._dir.name) / "bench.db"
        self.schema = f"bench_memory_{os.getpid()}_{n}"
        self.drop()

    def open(self) -> MemoryStore | PostgresMemoryStore:
        if self.kind == "sqlite":
            return MemoryStore(self.path)
        return PostgresMemoryStore(self.dsn, schema=self.schema)

    def size(self, store: MemoryStore | PostgresMemoryStore) -> int:
        if isinstance(store, MemoryStore):
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return file_size(self.path)
        size = 0
        for table in ("memories", "memory_heads", "memory_tombstones"):
            (value,) = store.conn.execute(
                "SELECT pg_total_relation_size(%s)", (f'"{self.schema}"."{table}"',)
            ).fetchone()
            size += int(value)
        return size

    def drop(self) -> None:
        if self.kind == "postgres":
            import psycopg
            from psycopg import sql

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                conn.execute(drop.format(sql.Identifier(self.schema)))

    def close(self) -> None:
        self.drop()
        self._dir.cleanup()


def bench_size(
    backend: Backend, n: int, samples: int, rng: random.Random
) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    store = backend.open()

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
        ("first retrieve (full load)", f"{(time.perf_counter() - start) * 1000:.1f} ms", "", "")
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

    other = backend.open()
    other_memory = other.memory("episodic", "bench")
    after_other: list[float] = []
    reloads = store.reloads
    for _ in range(max(3, samples // 4)):
        other_memory.add(sentence(rng))  # another connection commits
        start = time.perf_counter()
        episodic.retrieve(sentence(rng), k=10)
        after_other.append((time.perf_counter() - start) * 1000.0)
    assert store.reloads == reloads, "a retrieve after another writer reloaded the namespace"
    record("retrieve after another process's add", after_other)

    loads: list[float] = []
    for _ in range(3):
        fresh = backend.open()
        start = time.perf_counter()
        fresh.memory("episodic", "bench").retrieve(sentence(rng), k=10)
        loads.append((time.perf_counter() - start) * 1000.0)
        fresh.close()
    record("full load (new store's first retrieve)", loads)
    other.close()

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

    total = store.counts()[("bench", "episodic")]
    size = backend.size(store)
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k entries, fewer calls")
    parser.add_argument("--sizes", type=int, nargs="*", help="entry counts (overrides --quick)")
    parser.add_argument("--samples", type=int, help="timed calls per measurement")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--dsn", default=os.environ.get("FLOWSTATE_TEST_PG_DSN", DEFAULT_DSN))
    args = parser.parse_args(argv)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [10_000, 100_000])
    samples = args.samples or (30 if args.quick else 200)
    rng = random.Random(args.seed)
    print(f"flowstate.memory benchmark: sizes {sizes}, {samples} calls per measurement")
    print(
        "(median | p95 per call; HashingEmbedder dim 256; SQLite WAL, synchronous=FULL; "
        "Postgres on the server's defaults)\n"
    )
    header = ("measurement", "median / value", "p95 / rate", "notes")
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for kind, n in [(kind, n) for kind in kinds for n in sizes]:
        backend = Backend(kind, n, args.dsn)
        try:
            rows = bench_size(backend, n, samples, rng)
        finally:
            backend.close()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        print(f"## {kind}, {n:,} entries", flush=True)
        print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        print("-+-".join("-" * w for w in widths))
        for row in rows:
            print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
