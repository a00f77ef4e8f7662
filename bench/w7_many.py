"""W7 many runs: R concurrent runs of an M-node chain on one SQLite file.

(a) one process: one engine object (flowstate: one compiled app; LangGraph: one compiled
graph on one ``AsyncSqliteSaver``; Burr: one ``AsyncSQLitePersister`` shared by R
applications) and R runs started together with ``asyncio.gather`` in one event loop.
(b) P processes each running R/P runs the same way, each with its own engine object on the
same file; the processes are started and import everything first, then released together
by a barrier. Reports runs per second (completed runs / wall time from the release to the
last finish), the error count and how many of the errors were locking errors
("database is locked", "busy"). A run that returns a wrong result counts as an error.
"""

import asyncio
import multiprocessing as mp
import pathlib
import queue
import time
from typing import Any

from _common import FULL, Sizes, is_lock_error, scratch

# -- one engine object running `count` runs concurrently -------------------------------------


async def _fs_batch(path: str, nodes: int, count: int, tag: str) -> list[str | None]:
    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder

    class Counter(BaseModel):
        count: int = 0

    async def inc(s: Counter) -> dict:
        return {"count": s.count + 1}

    g = GraphBuilder(Counter, name="w7_many")
    for i in range(nodes):
        g.add_node(f"n{i}", inc)
    g.add_edge(START, "n0")
    for i in range(nodes - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{nodes - 1}", END)
    app = g.compile(store=path, max_steps=10 * nodes)
    _ = app.store  # open the connection before the clock starts

    async def one(j: int) -> str | None:
        try:
            r = await app.run({"count": 0}, run_id=f"{tag}-{j}")
            return None if r.state.count == nodes else f"wrong result {r.state.count}"
        except Exception as e:
            return f"{type(e).__name__}: {e}"

    async def go() -> list[str | None]:
        try:
            return list(await asyncio.gather(*(one(j) for j in range(count))))
        finally:
            app.store.close()

    return await _barriered(go)


async def _lg_batch(path: str, nodes: int, count: int, tag: str) -> list[str | None]:
    from typing import TypedDict

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    class Counter(TypedDict):
        count: int

    async def inc(s: Counter) -> dict:
        return {"count": s["count"] + 1}

    b = StateGraph(Counter)
    for i in range(nodes):
        b.add_node(f"n{i}", inc)
    b.add_edge(START, "n0")
    for i in range(nodes - 1):
        b.add_edge(f"n{i}", f"n{i + 1}")
    b.add_edge(f"n{nodes - 1}", END)

    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        await saver.setup()
        graph = b.compile(checkpointer=saver)

        async def one(j: int) -> str | None:
            config = {"configurable": {"thread_id": f"{tag}-{j}"}, "recursion_limit": nodes + 10}
            try:
                r = await graph.ainvoke({"count": 0}, config)
                return None if r["count"] == nodes else f"wrong result {r['count']}"
            except Exception as e:
                return f"{type(e).__name__}: {e}"

        async def go() -> list[str | None]:
            return list(await asyncio.gather(*(one(j) for j in range(count))))

        return await _barriered(go)


async def _burr_batch(path: str, nodes: int, count: int, tag: str) -> list[str | None]:
    from burr.core import ApplicationBuilder, State, action
    from burr.core.graph import GraphBuilder
    from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

    @action(reads=["count"], writes=["count"])
    async def inc(state: State) -> State:
        return state.update(count=state["count"] + 1)

    graph = (
        GraphBuilder()
        .with_actions(**{f"n{i}": inc for i in range(nodes)})
        .with_transitions(*[(f"n{i}", f"n{i + 1}") for i in range(nodes - 1)])
        .build()
    )
    persister = await AsyncSQLitePersister.from_values(db_path=path)
    try:
        await persister.initialize()
    except Exception:  # another process created the table at the same moment
        await persister.cleanup()
        persister = await AsyncSQLitePersister.from_values(db_path=path)
        await persister.initialize()

    async def one(j: int) -> str | None:
        try:
            app = await (
                ApplicationBuilder()
                .with_graph(graph)
                .initialize_from(
                    persister,
                    resume_at_next_action=True,
                    default_state={"count": 0},
                    default_entrypoint="n0",
                )
                .with_state_persister(persister)
                .with_identifiers(app_id=f"{tag}-{j}")
                .abuild()
            )
            _, _, state = await app.arun(halt_after=[f"n{nodes - 1}"])
            return None if state["count"] == nodes else f"wrong result {state['count']}"
        except Exception as e:
            return f"{type(e).__name__}: {e}"

    async def go() -> list[str | None]:
        try:
            return list(await asyncio.gather(*(one(j) for j in range(count))))
        finally:
            await persister.cleanup()

    return await _barriered(go)


_BATCH = {"flowstate": _fs_batch, "langgraph": _lg_batch, "burr": _burr_batch}

# -- timing: in-process, or released together across processes --------------------------------

_barrier: Any = None
_stamps: list[float] = []


async def _barriered(go: Any) -> list[str | None]:
    if _barrier is not None:
        await asyncio.to_thread(_barrier.wait)
    _stamps[:] = [time.time()]
    out = await go()
    _stamps.append(time.time())
    return out


def _child(engine: str, path: str, nodes: int, count: int, tag: str, barrier: Any, q: Any) -> None:
    global _barrier
    import logging

    logging.disable(logging.CRITICAL)
    _barrier = barrier
    try:
        errors = asyncio.run(_BATCH[engine](path, nodes, count, tag))
        q.put((_stamps[0], _stamps[1], errors))
    except Exception as e:
        now = time.time()
        q.put((now, now, [f"{type(e).__name__}: {e}"] * count))


def _processes(engine: str, path: str, cfg: Sizes) -> tuple[float, list[str | None]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(cfg.w7_procs)
    q = ctx.Queue()
    procs = [
        ctx.Process(
            target=_child,
            args=(engine, path, cfg.w7_nodes, cfg.w7_runs_per_proc, f"p{p}", barrier, q),
        )
        for p in range(cfg.w7_procs)
    ]
    for p in procs:
        p.start()
    results: list[tuple[float, float, list[str | None]]] = []
    deadline = time.monotonic() + 900
    while len(results) < len(procs) and time.monotonic() < deadline:
        try:
            results.append(q.get(timeout=1))
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and q.empty():
                break  # a child died without reporting
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
    missing = len(procs) - len(results)
    if missing:
        now = time.time()
        lost = [f"process died without a result (exit {p.exitcode})"] * cfg.w7_runs_per_proc
        results += [(now, now, lost)] * missing
        if len(results) == missing:
            return 0.0, [e for r in results for e in r[2]]
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    errors = [e for r in results for e in r[2]]
    return end - start, errors


def _summary(prefix: str, seconds: float, errors: list[str | None]) -> dict[str, Any]:
    bad = [e for e in errors if e is not None]
    out: dict[str, Any] = {
        f"{prefix}_runs_per_s": (len(errors) - len(bad)) / seconds if seconds > 0 else 0.0,
        f"{prefix}_errors": len(bad),
        f"{prefix}_lock_errors": sum(1 for e in bad if is_lock_error(e)),
    }
    if bad:
        out[f"{prefix}_first_error"] = bad[0][:200]
    return out


async def _measure(engine: str, cfg: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with scratch(f"w7-{engine}") as d:
        path = str(pathlib.Path(d) / f"{engine}.db")
        errors = await _BATCH[engine](path, cfg.w7_nodes, cfg.w7_runs, "a")
        out.update(_summary("a", _stamps[1] - _stamps[0], errors))
    with scratch(f"w7-{engine}-mp") as d:
        path = str(pathlib.Path(d) / f"{engine}.db")
        seconds, errors = await asyncio.to_thread(_processes, engine, path, cfg)
        out.update(_summary("b", seconds, errors))
    return out


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    return await _measure("flowstate", cfg)


async def langgraph(cfg: Sizes = FULL) -> dict[str, Any]:
    return await _measure("langgraph", cfg)


async def burr(cfg: Sizes = FULL) -> dict[str, Any]:
    return await _measure("burr", cfg)
