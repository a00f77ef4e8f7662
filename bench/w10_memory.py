"""W10 memory per run: R runs in flight at once in one process, each inside a node that
awaits ``asyncio.sleep(S)``, with SQLite checkpoints (each engine's default persistence,
as in W1(b)).

Each engine is measured in a fresh subprocess (RSS is per process, and an earlier
workload's garbage or arenas would blur it): the child imports the engine, builds the
graph, opens its store and runs one warm-up run; then it resets the peak
(``/proc/self/clear_refs``), reads its resident set (``VmRSS``, the baseline), starts the
R runs together with ``asyncio.gather`` and, once every run has finished, reads the peak
(``VmHWM``). Reported: (peak − baseline) / R per run, the peak and the baseline. Every
run must finish with the right state; the wall time of the R runs is reported too
(ideal ≈ S).

- flowstate: one compiled app on one SQLite file, ``app.run`` × R.
- LangGraph: one compiled graph on one ``AsyncSqliteSaver``, ``ainvoke`` × R (one
  ``thread_id`` each).
- Burr: one ``AsyncSQLitePersister``; per run an application built with
  ``initialize_from`` / ``with_state_persister`` and ``arun`` (Burr's unit is an app).

    python bench/w10_memory.py --engine flowstate --runs 1000   # the child, prints JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from _common import FULL, Sizes, scratch

HERE = pathlib.Path(__file__).resolve().parent


def _status(key: str) -> int:
    """A ``/proc/self/status`` size in bytes (``VmRSS``, ``VmHWM``)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


class InFlight:
    """How many runs are inside the sleeping node, and the most at once."""

    now = 0
    most = 0

    @classmethod
    async def sleep(cls, seconds: float) -> None:
        cls.now += 1
        cls.most = max(cls.most, cls.now)
        try:
            await asyncio.sleep(seconds)
        finally:
            cls.now -= 1


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where not allowed."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- the children ------------------------------------------------------------------------------


async def _flowstate(path: str, runs: int, sleep: float) -> tuple[Any, Any]:
    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder

    class Waiting(BaseModel):
        i: int = 0
        done: bool = False

    async def wait(s: Waiting) -> dict:
        await InFlight.sleep(sleep)
        return {"done": True}

    g = GraphBuilder(Waiting, name="w10_memory")
    g.add_node(wait)
    g.add_edge(START, "wait")
    g.add_edge("wait", END)
    app = g.compile(store=path)

    async def one(i: int) -> bool:
        r = await app.run({"i": i}, run_id=f"r{i}")
        return r.status == "completed" and r.state.done and r.state.i == i

    async def batch(n: int, base: int) -> list[bool]:
        return list(await asyncio.gather(*(one(base + i) for i in range(n))))

    return batch, app.store.close


async def _langgraph(path: str, runs: int, sleep: float) -> tuple[Any, Any]:
    from typing import TypedDict

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    class Waiting(TypedDict):
        i: int
        done: bool

    async def wait(s: Waiting) -> dict:
        await InFlight.sleep(sleep)
        return {"done": True}

    b = StateGraph(Waiting)
    b.add_node("wait", wait)
    b.add_edge(START, "wait")
    b.add_edge("wait", END)
    cm = AsyncSqliteSaver.from_conn_string(path)
    saver = await cm.__aenter__()
    graph = b.compile(checkpointer=saver)

    async def one(i: int) -> bool:
        r = await graph.ainvoke({"i": i, "done": False}, {"configurable": {"thread_id": f"r{i}"}})
        return r["done"] and r["i"] == i

    async def batch(n: int, base: int) -> list[bool]:
        return list(await asyncio.gather(*(one(base + i) for i in range(n))))

    async def close() -> None:
        await cm.__aexit__(None, None, None)

    return batch, close


async def _burr(path: str, runs: int, sleep: float) -> tuple[Any, Any]:
    from burr.core import ApplicationBuilder, State, action
    from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

    @action(reads=[], writes=["done"])
    async def wait(state: State) -> State:
        await InFlight.sleep(sleep)
        return state.update(done=True)

    persister = await AsyncSQLitePersister.from_values(db_path=path)
    await persister.initialize()

    async def one(i: int) -> bool:
        app = await (
            ApplicationBuilder()
            .with_actions(wait=wait)
            .with_transitions()
            .initialize_from(
                persister,
                resume_at_next_action=True,
                default_state={"i": i, "done": False},
                default_entrypoint="wait",
            )
            .with_state_persister(persister)
            .with_identifiers(app_id=f"r{i}")
            .abuild()
        )
        _, _, state = await app.arun(halt_after=["wait"])
        return bool(state["done"]) and state["i"] == i

    async def batch(n: int, base: int) -> list[bool]:
        return list(await asyncio.gather(*(one(base + i) for i in range(n))))

    return batch, persister.cleanup


CHILDREN = {"flowstate": _flowstate, "langgraph": _langgraph, "burr": _burr}


async def _child(engine: str, runs: int, sleep: float) -> dict[str, Any]:
    import gc

    with scratch(f"w10-{engine}") as d:
        batch, close = await CHILDREN[engine](str(d / f"{engine}.db"), runs, sleep)
        assert all(await batch(1, runs)), "warm-up run gave a wrong result"
        gc.collect()
        InFlight.most = 0
        reset = _reset_peak()
        base = _status("VmRSS")
        t0 = time.perf_counter()
        ok = await batch(runs, 0)
        wall = time.perf_counter() - t0
        peak = _status("VmHWM")
        out = close()
        if asyncio.iscoroutine(out):
            await out
    if not all(ok):
        raise AssertionError(f"{ok.count(False)} of {runs} runs gave a wrong result")
    return {
        "rss_per_run_b": (peak - base) / runs,
        "rss_peak_mib": peak / 2**20,
        "rss_base_mib": base / 2**20,
        "wall_s": wall,
        "runs": runs,
        "in_flight": InFlight.most,
        "peak_reset": reset,
    }


# -- the parent: one subprocess per measurement -------------------------------------------------


def _measure(engine: str, cfg: Sizes) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, str(HERE / "w10_memory.py"), "--engine", engine]
    cmd += ["--runs", str(cfg.w10_runs), "--sleep", str(cfg.w10_sleep)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"W10 {engine} child failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    return _measure("flowstate", cfg)


async def langgraph(cfg: Sizes = FULL) -> dict[str, Any]:
    return _measure("langgraph", cfg)


async def burr(cfg: Sizes = FULL) -> dict[str, Any]:
    return _measure("burr", cfg)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=sorted(CHILDREN), required=True)
    ap.add_argument("--runs", type=int, default=FULL.w10_runs)
    ap.add_argument("--sleep", type=float, default=FULL.w10_sleep)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(_child(a.engine, a.runs, a.sleep))))
