"""W1 chain: N nodes, each incrementing a counter.

(a) no persistence: flowstate ``compile(store=InMemoryStore())`` (the records kept in dicts:
no SQL, no JSON rows), LangGraph without a checkpointer, Burr without a persister. (b) SQLite
file checkpoints at each engine's default granularity: flowstate ``compile(store=path)`` (a
commit per activation), LangGraph ``AsyncSqliteSaver`` (durability="async", a checkpoint per
superstep), Burr ``AsyncSQLitePersister`` (a row per action), DBOS (``@DBOS.step()`` calls
inside a ``@DBOS.workflow()``, both async; its default SQLite system database: a checkpoint
per step). Postgres, also measured where the server answers (``_peerdb``): flowstate
``PostgresStore`` (a commit per activation) and DBOS with a Postgres system database, both
with the server's ``synchronous_commit=on``. DBOS runs in a child process per backend
(its global state stays out of this process); its set-up is outside its timer. The metric
is the wall time of one run divided by N: per-node overhead in µs. Graphs are built once
outside the timer; each timed run is a fresh run/thread/app id.
"""

import sys
from typing import Any

from _common import FULL, Clock, Sizes, scratch
from _peerdb import PG_DSN, dbos_backends, dbos_config, in_child, pg_available, pg_schema

INNER = 3
"""Timed runs per measurement (after one untimed warm-up run); the mean is reported."""


# -- flowstate ------------------------------------------------------------------------------


def _fs_builder(n: int) -> Any:
    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder

    class Counter(BaseModel):
        count: int = 0

    async def inc(s: Counter) -> dict:
        return {"count": s.count + 1}

    g = GraphBuilder(Counter, name=f"w1_chain_{n}")
    for i in range(n):
        g.add_node(f"n{i}", inc)
    g.add_edge(START, "n0")
    for i in range(n - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{n - 1}", END)
    return g


async def _fs_measure(app: Any, n: int) -> float:
    r = await app.run({"count": 0})  # warm-up
    assert r.state.count == n, r.state
    total = 0.0
    for _ in range(INNER):
        with Clock() as c:
            r = await app.run({"count": 0})
        assert r.status == "completed" and r.state.count == n
        total += c.s
    return total / INNER / n * 1e6


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    n = cfg.w1_nodes
    g = _fs_builder(n)
    out: dict[str, Any] = {}
    from flowstate.checkpoints import InMemoryStore

    app_mem = g.compile(store=InMemoryStore(), max_steps=10 * n)
    out["a_us_per_node"] = await _fs_measure(app_mem, n)
    with scratch("w1-fs") as d:
        app = g.compile(store=str(d / "fs.db"), max_steps=10 * n)
        out["b_us_per_node"] = await _fs_measure(app, n)
        app.store.close()
        app_full = g.compile(store=str(d / "fs_full.db"), durability="full", max_steps=10 * n)
        out["b_full_us_per_node"] = await _fs_measure(app_full, n)
        app_full.store.close()
        out["full_floor_us"] = _sqlite_full_floor(str(d / "floor.db"), n)
    if pg_available():
        from flowstate.checkpoints import PostgresStore

        with pg_schema("w1_fs") as schema:
            store = PostgresStore(PG_DSN, schema=schema)
            app_pg = g.compile(store=store, max_steps=10 * n)
            out["pg_us_per_node"] = await _fs_measure(app_pg, n)
            store.close()
            out["pg_floor_us"] = _pg_floor(schema, n)
    return out


def _sqlite_full_floor(path: str, n: int) -> float:
    """The disk's floor for ``durability="full"``: one one-row INSERT per transaction in
    WAL mode with ``synchronous=FULL`` (an fsync of the WAL per commit, as flowstate's
    full durability does), µs each, on the same disk as the runs."""
    import sqlite3

    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute('CREATE TABLE "floor" ("x" INTEGER)')
        for i in range(10):
            c.execute('INSERT INTO "floor" VALUES (?)', [i])
        with Clock() as t:
            for i in range(n):
                c.execute('INSERT INTO "floor" VALUES (?)', [i])
    finally:
        c.close()
    return t.s / n * 1e6


def _pg_floor(schema: str, n: int) -> float:
    """The server's floor for a durable commit: one one-row INSERT per transaction
    (autocommit, prepared, ``synchronous_commit`` as the server has it), µs each."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as c:
        c.execute(f'CREATE TABLE "{schema}"."floor" ("x" bigint)')
        q = f'INSERT INTO "{schema}"."floor" VALUES (%s)'
        for i in range(10):
            c.execute(q, [i], prepare=True)
        with Clock() as t:
            for i in range(n):
                c.execute(q, [i], prepare=True)
    return t.s / n * 1e6


# -- LangGraph -------------------------------------------------------------------------------


def _lg_builder(n: int) -> Any:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class Counter(TypedDict):
        count: int

    async def inc(s: Counter) -> dict:
        return {"count": s["count"] + 1}

    g = StateGraph(Counter)
    for i in range(n):
        g.add_node(f"n{i}", inc)
    g.add_edge(START, "n0")
    for i in range(n - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{n - 1}", END)
    return g


async def _lg_measure(graph: Any, n: int, persistent: bool) -> float:
    k = 0

    def config() -> dict[str, Any]:
        nonlocal k
        k += 1
        c: dict[str, Any] = {"recursion_limit": n + 10}
        if persistent:
            c["configurable"] = {"thread_id": f"w1-{k}"}
        return c

    r = await graph.ainvoke({"count": 0}, config())  # warm-up
    assert r["count"] == n, r
    total = 0.0
    for _ in range(INNER):
        with Clock() as c:
            r = await graph.ainvoke({"count": 0}, config())
        assert r["count"] == n
        total += c.s
    return total / INNER / n * 1e6


async def langgraph(cfg: Sizes = FULL) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    n = cfg.w1_nodes
    b = _lg_builder(n)
    out: dict[str, Any] = {"a_us_per_node": await _lg_measure(b.compile(), n, False)}
    with scratch("w1-lg") as d:
        async with AsyncSqliteSaver.from_conn_string(str(d / "lg.db")) as saver:
            out["b_us_per_node"] = await _lg_measure(b.compile(checkpointer=saver), n, True)
    return out


# -- Burr ------------------------------------------------------------------------------------


def _burr_graph(n: int) -> Any:
    from burr.core import State, action
    from burr.core.graph import GraphBuilder

    @action(reads=["count"], writes=["count"])
    async def inc(state: State) -> State:
        return state.update(count=state["count"] + 1)

    return (
        GraphBuilder()
        .with_actions(**{f"n{i}": inc for i in range(n)})
        .with_transitions(*[(f"n{i}", f"n{i + 1}") for i in range(n - 1)])
        .build()
    )


async def _burr_run(graph: Any, n: int, persister: Any, app_id: str) -> int:
    from burr.core import ApplicationBuilder

    b = ApplicationBuilder().with_graph(graph).with_identifiers(app_id=app_id)
    if persister is None:
        b = b.with_state(count=0).with_entrypoint("n0")
    else:
        b = b.initialize_from(
            persister,
            resume_at_next_action=True,
            default_state={"count": 0},
            default_entrypoint="n0",
        ).with_state_persister(persister)
    app = await b.abuild()
    _, _, state = await app.arun(halt_after=[f"n{n - 1}"])
    return int(state["count"])


async def _burr_measure(graph: Any, n: int, persister: Any) -> float:
    k = 0

    async def once() -> None:
        nonlocal k
        k += 1
        assert await _burr_run(graph, n, persister, f"w1-{k}") == n

    await once()  # warm-up
    total = 0.0
    for _ in range(INNER):
        with Clock() as c:
            await once()
        total += c.s
    return total / INNER / n * 1e6


async def burr(cfg: Sizes = FULL) -> dict[str, Any]:
    from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

    n = cfg.w1_nodes
    graph = _burr_graph(n)
    out: dict[str, Any] = {"a_us_per_node": await _burr_measure(graph, n, None)}
    with scratch("w1-burr") as d:
        persister = await AsyncSQLitePersister.from_values(db_path=str(d / "burr.db"))
        await persister.initialize()
        try:
            out["b_us_per_node"] = await _burr_measure(graph, n, persister)
        finally:
            await persister.cleanup()
    return out


# -- DBOS ------------------------------------------------------------------------------------


async def dbos(cfg: Sizes = FULL) -> dict[str, Any]:
    """DBOS in a child process per backend (``_peerdb``): SQLite (its default) and Postgres."""
    out: dict[str, Any] = {}
    with scratch("w1-dbos") as d:
        for label, url, schema in dbos_backends(str(d)):
            r = in_child(__file__, cfg.w1_nodes, url, schema or "")
            out["b_us_per_node" if label == "sqlite" else "pg_us_per_node"] = r["us_per_step"]
    return out


async def _dbos_child(n: int, url: str, schema: str | None) -> dict[str, Any]:
    from dbos import DBOS

    @DBOS.step()
    async def inc(count: int) -> int:
        return count + 1

    @DBOS.workflow()
    async def chain(n: int) -> int:
        count = 0
        for _ in range(n):
            count = await inc(count)
        return count

    DBOS(config=dbos_config("bench-w1", url, schema))  # type: ignore[arg-type]
    DBOS.launch()
    try:
        assert await chain(n) == n  # warm-up
        total = 0.0
        for _ in range(INNER):
            with Clock() as c:
                r = await chain(n)
            assert r == n
            total += c.s
    finally:
        DBOS.destroy()
    return {"us_per_step": total / INNER / n * 1e6}


if __name__ == "__main__" and sys.argv[1:2] == ["--dbos-child"]:
    import asyncio
    import json

    n_, url_, schema_ = int(sys.argv[2]), sys.argv[3], sys.argv[4] or None
    print(json.dumps(asyncio.run(_dbos_child(n_, url_, schema_))))
