"""Profile flowstate alone on one benchmark workload with cProfile (no peers needed).

    python bench/prof.py W1a|W1b|W2|W3|W6 [--quick] [--top 30] [--sort tottime|cumulative]

Prints the top functions and the share of the profiled wall time spent in a few buckets
(SQLite calls, pydantic, json, hashing, asyncio, flowstate's own code). W2 also prints the
bytes per table of the resulting database (SQLite's dbstat). Used for the Findings in
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pathlib
import pstats
import sqlite3
import sys
import tempfile
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import FULL, QUICK, Sizes, db_bytes, scratch  # noqa: E402

BUCKETS = [
    ("sqlite3 (execute/commit/fetch)", ("sqlite3.Connection", "sqlite3.Cursor", "_sqlite3")),
    ("pydantic validation/serialization", ("pydantic", "BaseModel", "TypeAdapter")),
    ("json", ("json/", "json.")),
    ("hashing (hashlib)", ("hashlib", "_hashlib", "openssl_")),
    ("asyncio", ("asyncio/", "_asyncio", "select.epoll")),
]


def _bucket_share(stats: pstats.Stats, total: float) -> list[tuple[str, float]]:
    """Exclusive (tottime) seconds per bucket; the rest split into flowstate / other."""
    sums = {name: 0.0 for name, _ in BUCKETS}
    flow = other = 0.0
    for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{file}:{func}"
        for name, needles in BUCKETS:
            if any(n in where for n in needles):
                sums[name] += tt
                break
        else:
            if "/flowstate/" in file:
                flow += tt
            else:
                other += tt
    out = [(k, v / total) for k, v in sums.items()]
    out += [("flowstate's own Python code", flow / total), ("everything else", other / total)]
    return out


def _flowstate_rollup(stats: pstats.Stats, total: float, top: int) -> list[tuple[str, float]]:
    """Inclusive (cumulative) share of flowstate functions."""
    rows = []
    for (file, line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "/flowstate/" in file:
            short = file.split("/flowstate/")[-1]
            rows.append((f"flowstate/{short}:{line} {func}", ct / total))
    rows.sort(key=lambda r: -r[1])
    return rows[:top]


def _w1(cfg: Sizes, store: str, runs: int) -> Any:
    import w1_chain

    g = w1_chain._fs_builder(cfg.w1_nodes)
    d = pathlib.Path(tempfile.mkdtemp(prefix="fsbench-prof-"))
    app = g.compile(
        store=store if store == ":memory:" else str(d / "p.db"), max_steps=10 * cfg.w1_nodes
    )

    async def work() -> None:
        for _ in range(runs):
            await app.run({"count": 0})

    return work


def _dbstat(path: pathlib.Path) -> None:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, count(*), sum(pgsize), sum(payload), sum(unused) FROM dbstat "
            "GROUP BY name ORDER BY sum(pgsize) DESC"
        ).fetchall()
    except sqlite3.DatabaseError as e:
        print(f"(dbstat unavailable: {e})")
        return
    finally:
        conn.close()
    print(f"\n{'table/index':32} {'pages':>6} {'bytes':>9} {'payload':>9} {'unused':>9}")
    for name, pages, size, payload, unused in rows:
        print(f"{name:32} {pages:6} {size:9} {payload:9} {unused:9}")


async def _w2(cfg: Sizes) -> None:
    import w2_growth

    print(await w2_growth.flowstate(cfg))
    # again, keeping the file, for the per-table breakdown
    from typing import Annotated

    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder, append

    items = w2_growth._items(cfg.w2_steps, cfg.w2_chars)

    class Growth(BaseModel):
        items: Annotated[list[str], append] = []

    async def grow(s: Growth) -> dict:
        return {"items": [items[len(s.items)]]}

    def again(s: Growth) -> str:
        return "grow" if len(s.items) < cfg.w2_steps else END

    g = GraphBuilder(Growth, name="w2_growth")
    g.add_node(grow)
    g.add_edge(START, "grow")
    g.add_conditional_edges("grow", again, targets=["grow", END])
    with scratch("prof-w2") as d:
        path = d / "fs.db"
        app = g.compile(store=str(path))
        await app.run({})
        sizes = {
            s: pathlib.Path(str(path) + s).stat().st_size
            for s in ("", "-wal", "-shm")
            if pathlib.Path(str(path) + s).exists()
        }
        print(f"\nopen connection: {sizes} total {db_bytes(path)}")
        app.store.close()
        print(
            f"after close: {db_bytes(path)} bytes; page_size "
            f"{sqlite3.connect(path).execute('PRAGMA page_size').fetchone()[0]}"
        )
        _dbstat(path)


def _w6(cfg: Sizes) -> Any:
    """Profile the first and the last window of W6 separately and print what grew."""
    import w6_long

    first, last = cProfile.Profile(), cProfile.Profile()
    window, steps = cfg.w6_window, cfg.w6_steps
    tick = w6_long._Probe.tick

    def switching(self: Any) -> None:
        n = len(self.stamps)
        if n == 0:
            first.enable()
        elif n == window:
            first.disable()
        elif n == steps - window:
            last.enable()
        tick(self)

    async def work() -> Any:
        w6_long._Probe.tick = switching  # type: ignore[method-assign]
        try:
            out = await w6_long.flowstate(cfg)
        finally:
            last.disable()
            w6_long._Probe.tick = tick  # type: ignore[method-assign]
        a = pstats.Stats(first).stats  # type: ignore[attr-defined]
        b = pstats.Stats(last).stats  # type: ignore[attr-defined]
        ta = sum(v[2] for v in a.values())
        tb = sum(v[2] for v in b.values())
        print(f"\nW6: profiled first {window} steps {ta:.3f} s, last {window} steps {tb:.3f} s")
        print("functions whose inclusive time grew the most (last window - first window):")
        grew = []
        for k, v in b.items():
            before = a.get(k, (0, 0, 0.0, 0.0))[3]
            grew.append((v[3] - before, before, v[3], v[1], k))
        grew.sort(key=lambda r: -r[0])
        print(f"  {'+s':>7} {'first':>7} {'last':>7} {'calls':>6}  function")
        for d, x, y, calls, (file, line, func) in grew[:25]:
            print(f"  {d:7.3f} {x:7.3f} {y:7.3f} {calls:6}  {file.split('/')[-1]}:{line} {func}")
        a_self = sorted(((v[2], k) for k, v in a.items()), reverse=True)[:8]
        b_self = sorted(((v[2], k) for k, v in b.items()), reverse=True)[:8]
        print(
            "top exclusive time, first window:", [(f"{k[2]}", round(t / ta, 3)) for t, k in a_self]
        )
        print(
            "top exclusive time, last window:", [(f"{k[2]}", round(t / tb, 3)) for t, k in b_self]
        )
        first.clear()
        last.clear()
        return out

    return work


def _scenario(name: str, cfg: Sizes) -> Any:
    """An async callable doing the work to profile (it is run once before, unprofiled)."""
    if name == "W1A":
        return _w1(cfg, ":memory:", 20)
    if name == "W1B":
        return _w1(cfg, "file", 10)
    if name == "W2":
        return lambda: _w2(cfg)
    if name == "W3":
        import w3_fanout

        app = w3_fanout._fs_graph(cfg).compile(store=":memory:")

        async def fan() -> float:
            t0 = time.perf_counter()
            for _ in range(10):
                await app.run({})
            return (time.perf_counter() - t0) / 10 * 1000  # ms per run

        return fan
    if name == "W6":
        return _w6(cfg)
    raise SystemExit(f"unknown scenario {name}: W1a, W1b, W2, W3, W6")


def _sampled(work: Any) -> None:
    from pyinstrument import Profiler

    async def twice() -> None:
        print("warm-up:", await work())
        with Profiler(interval=0.0002, async_mode="disabled") as p:
            print("profiled:", await work())
        print(p.output_text(unicode=False, color=False, show_all=False))

    asyncio.run(twice())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument(
        "--pyinstrument",
        action="store_true",
        help="sample with pyinstrument instead (less overhead per call; "
        "pip install pyinstrument into bench/.peers and run with its python)",
    )
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    if args.pyinstrument:
        _sampled(_scenario(args.scenario.upper(), cfg))
        return
    work = _scenario(args.scenario.upper(), cfg)
    if args.scenario.upper() == "W6":  # profiles its own two windows
        print(asyncio.run(work()))
        return

    async def twice() -> float:
        print("warm-up:", await work())
        prof.enable()
        t0 = time.perf_counter()
        print("profiled:", await work())
        wall = time.perf_counter() - t0
        prof.disable()
        return wall

    prof = cProfile.Profile()
    wall = asyncio.run(twice())
    s = io.StringIO()
    stats = pstats.Stats(prof, stream=s)
    total = max(wall, 1e-9)
    print(f"\nprofiled wall time {wall:.3f} s")
    print("\nexclusive time by bucket:")
    for k, v in _bucket_share(stats, total):
        print(f"  {v:6.1%}  {k}")
    print("\nflowstate functions, inclusive share of the wall time:")
    for k, v in _flowstate_rollup(stats, total, args.top):
        print(f"  {v:6.1%}  {k}")
    stats.sort_stats(args.sort).print_stats(args.top)
    print(s.getvalue())


if __name__ == "__main__":
    main()
