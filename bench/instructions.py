"""Instruction counts of flowstate's hot path, steady on a loaded machine.

    python bench/instructions.py [W1a W1b W1full W3 W7 ...] [--events on|off|both]

For each scenario, two processes run it under ``valgrind --tool=callgrind`` with a few and
with more runs (after a warm-up run in both); the difference in total instructions (Ir)
divided by the extra activations is the count per activation, with start-up, imports and
the warm-up cancelled out. Scenarios:

- ``W1a``: W1's 200-node chain on ``InMemoryStore`` (the "no persistence" row);
- ``W1b``: the same chain on an SQLite file (``durability="normal"``);
- ``W1full``: the same with ``durability="full"`` (fsync counts as one syscall: the
  instructions do not show its wait);
- ``W3``: W3's fan-out of 100 branches on ``InMemoryStore``, without the 10 ms sleeps
  (per branch activation);
- ``W7``: 50 concurrent runs of a 20-node chain on one SQLite file, one process.

``--events off`` replaces the engine's event log with none (``events=False``), to show what
recording run events costs. Instructions are not time: an fsync or a page-cache miss costs
few instructions and much time, so W1full's wall time is not in these numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("W1a", "W1b", "W1full", "W3", "W7")
LOW, HIGH = 1, 3
"""Timed runs of the two processes (W7: batches of 50 runs)."""


def _chain(n: int, name: str) -> Any:
    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder

    class Counter(BaseModel):
        count: int = 0

    async def inc(s: Counter) -> dict[str, int]:
        return {"count": s.count + 1}

    g = GraphBuilder(Counter, name=name)
    for i in range(n):
        g.add_node(f"n{i}", inc)
    g.add_edge(START, "n0")
    for i in range(n - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{n - 1}", END)
    return g


def _fanout(branches: int) -> Any:
    from typing import Annotated

    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder, Send, add

    class Fan(BaseModel):
        total: Annotated[int, add] = 0

    async def fanout(s: Fan) -> dict[str, int]:
        return {}

    def route(s: Fan) -> list[Send]:
        return [Send("branch", i) for i in range(branches)]

    async def branch(i: int) -> dict[str, int]:
        return {"total": 1}

    async def count(s: Fan) -> dict[str, int]:
        return {}

    g = GraphBuilder(Fan, name="w3_fanout_ir")
    g.add_node(fanout)
    g.add_node(branch)
    g.add_node(count)
    g.add_edge(START, "fanout")
    g.add_conditional_edges("fanout", route, targets=["branch"])
    g.add_edge("branch", "count")
    g.add_edge("count", END)
    return g


def child(scenario: str, runs: int, events: bool) -> None:
    """Run ``scenario`` once as a warm-up, then ``runs`` times."""
    sys.path.insert(0, str(ROOT))
    from flowstate.checkpoints import InMemoryStore

    d = tempfile.mkdtemp(prefix="fs-ir-")
    opts: dict[str, Any] = {} if events else {"events": False}
    if scenario in ("W1a", "W1b", "W1full"):
        n = 200
        store: Any = InMemoryStore() if scenario == "W1a" else os.path.join(d, "w1.db")
        if scenario == "W1full":
            opts["durability"] = "full"
        app = _chain(n, "w1_ir").compile(store=store, max_steps=10 * n, **opts)

        async def once() -> None:
            r = await app.run({"count": 0})
            assert r.state.count == n

    elif scenario == "W3":
        app = _fanout(100).compile(store=InMemoryStore(), **opts)

        async def once() -> None:
            r = await app.run({})
            assert r.state.total == 100

    elif scenario == "W7":
        n = 20
        app = _chain(n, "w7_ir").compile(store=os.path.join(d, "w7.db"), max_steps=10 * n, **opts)

        async def once() -> None:
            rs = await asyncio.gather(*(app.run({"count": 0}) for _ in range(50)))
            assert all(r.state.count == n for r in rs)

    else:
        raise SystemExit(f"unknown scenario {scenario}: {', '.join(SCENARIOS)}")

    async def main() -> None:
        await once()
        for _ in range(runs):
            await once()

    asyncio.run(main())


PER_RUN = {"W1a": 200, "W1b": 200, "W1full": 200, "W3": 102, "W7": 1000}
"""Activations per timed run of each scenario."""


def instructions(scenario: str, runs: int, events: bool) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            scenario,
            str(runs),
            "on" if events else "off",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        m = re.search(r"Collected : (\d+)", p.stderr)
        if p.returncode != 0 or m is None:
            raise SystemExit(f"{scenario}: valgrind failed:\n{p.stderr[-3000:]}")
        return int(m.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "on")
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--events", choices=("on", "off", "both"), default="on")
    args = ap.parse_args()
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.events]
    print(f"instructions per activation = (Ir of {HIGH} runs - Ir of {LOW} runs) / activations")
    print("| scenario | events | Ir per activation |")
    print("|---|---|---|")
    for s in args.scenarios:
        for ev in modes:
            diff = instructions(s, HIGH, ev) - instructions(s, LOW, ev)
            per = diff / ((HIGH - LOW) * PER_RUN[s])
            print(f"| {s} | {'on' if ev else 'off'} | {per:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
