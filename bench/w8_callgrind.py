"""W8 (the agent loop) in instructions instead of seconds, for a shared, noisy machine.

    bench/.peers/bin/python bench/w8_callgrind.py [--turns 50] [--engines flowstate,langgraph]

For each engine, two processes run the W8 agent (``bench/w8_agent.py``: same script, same
tool, SQLite file) under ``valgrind --tool=callgrind``, one doing 1 run after the warm-up and
one doing 3; the difference of their total instruction counts (Ir) over the 2 extra runs is
the count per run, start-up and imports cancelled out. Printed: instructions per turn and
the ratio LangGraph / flowstate. Needs valgrind; takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def child(engine: str, runs: int, turns: int) -> None:
    sys.path.insert(0, str(HERE))
    import dataclasses

    import w8_agent
    from _common import FULL

    cfg = dataclasses.replace(FULL, w8_turns=turns)
    w8_agent.INNER = runs  # the module's timed runs, after its warm-up
    asyncio.run(getattr(w8_agent, engine)(cfg))


def instructions(engine: str, runs: int, turns: int) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "callgrind.out"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                engine,
                str(runs),
                str(turns),
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        m = re.search(r"^summary:\s*(\d+)", out.read_text(), re.M)
        assert m, "no summary line in the callgrind output"
        return int(m.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--engines", default="flowstate,langgraph")
    a = ap.parse_args()
    per_turn: dict[str, float] = {}
    for engine in a.engines.split(","):
        t0 = time.perf_counter()
        low = instructions(engine, 1, a.turns)
        high = instructions(engine, 3, a.turns)
        per_turn[engine] = (high - low) / 2 / a.turns
        print(
            f"{engine:10s} {per_turn[engine] / 1e6:8.2f} M instructions per turn "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    fs: Any = per_turn.get("flowstate")
    lg: Any = per_turn.get("langgraph")
    if fs and lg:
        print(f"LangGraph / flowstate: {lg / fs:.2f}×")


if __name__ == "__main__":
    main()
