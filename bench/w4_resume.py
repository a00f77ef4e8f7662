"""W4 resume: an N-node chain with SQLite checkpoints where node F raises on its first call.

The first run fails at F; a fresh engine object on a fresh connection to the same file then
resumes it. Calls are counted per node. Reports the resume time (from opening the store to
the completed run; building the graph definition is outside the timer) and
``reexecuted``: how many nodes other than F ran more than once — committed nodes that
were run again (F itself legitimately runs twice: its first call never committed).

- flowstate: ``NodeFailed`` from ``run``; ``resume(run_id)`` on a new compiled app.
- LangGraph: the exception from ``ainvoke``; ``ainvoke(None, config)`` on the same thread.
- Burr: the exception from ``arun``; ``initialize_from(persister,
  resume_at_next_action=True)`` on the same app id, then ``arun``.
- DBOS (a child process per backend, see ``_peerdb``): a ``@DBOS.workflow()`` calling
  ``@DBOS.step()`` N times; the step raises, so the workflow ends in ``ERROR``. A failed
  workflow is not resumable in DBOS (``resume_workflow`` only restarts cancelled or
  enqueued ones): its documented way on is ``fork_workflow(id, start_step)`` from the
  failed step (found with ``list_workflow_steps``), which copies the checkpoints of the
  steps before it into a new workflow and runs the rest. The timer covers a new
  ``DBOS(config=…)`` + ``DBOS.launch()`` (its "open"), the fork and ``get_result``. The
  fork goes onto a queue polled every 10 ms and ``get_result`` polls every 10 ms (the
  defaults, 1 s each, would add about 2 s of waiting).

``pg_*`` keys: the same on Postgres, flowstate ``PostgresStore`` and DBOS with a Postgres
system database, each in a fresh schema.
"""

import sys
from collections import Counter as Tally
from typing import Any

from _common import FULL, Clock, Sizes, scratch
from _peerdb import PG_DSN, dbos_backends, dbos_config, in_child, pg_available, pg_schema


class Boom(RuntimeError):
    pass


def _probe(n: int, fail_at: int) -> tuple[Tally, Any]:
    calls: Tally = Tally()

    def hit(i: int) -> None:
        calls[i] += 1
        if i == fail_at and calls[i] == 1:
            raise Boom(f"node {i} fails once")

    return calls, hit


def _result(calls: Tally, n: int, fail_at: int, seconds: float) -> dict[str, Any]:
    assert all(calls[i] >= 1 for i in range(n)), calls
    again = [i for i in range(n) if i != fail_at and calls[i] > 1]
    return {
        "resume_ms": seconds * 1000,
        "reexecuted": len(again),
        "extra_calls": sum(calls[i] - 1 for i in again),
        "fail_node_calls": calls[fail_at],
    }


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder, NodeFailed

    n, fail_at = cfg.w4_nodes, cfg.w4_fail_at
    calls, hit = _probe(n, fail_at)

    class Counter(BaseModel):
        count: int = 0

    def make(i: int) -> Any:
        async def node(s: Counter) -> dict:
            hit(i)
            return {"count": s.count + 1}

        return node

    g = GraphBuilder(Counter, name="w4_resume")
    for i in range(n):
        g.add_node(f"n{i}", make(i))
    g.add_edge(START, "n0")
    for i in range(n - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{n - 1}", END)

    async def fail_then_resume(open_store: Any) -> float:
        app = g.compile(store=open_store(), max_steps=10 * n)
        try:
            await app.run({"count": 0}, run_id="w4")
            raise AssertionError("the run should have failed")
        except NodeFailed:
            pass
        app.store.close()
        with Clock() as c:
            fresh = g.compile(store=open_store(), max_steps=10 * n)
            r = await fresh.resume("w4")
        assert r.status == "completed" and r.state.count == n, r
        fresh.store.close()
        return c.s

    with scratch("w4-fs") as d:
        path = str(d / "fs.db")
        out = _result(calls, n, fail_at, await fail_then_resume(lambda: path))
    if pg_available():
        from flowstate.checkpoints import PostgresStore

        calls.clear()
        with pg_schema("w4_fs") as schema:
            s = await fail_then_resume(lambda: PostgresStore(PG_DSN, schema=schema))
        out |= {f"pg_{k}": v for k, v in _result(calls, n, fail_at, s).items()}
    return out


async def langgraph(cfg: Sizes = FULL) -> dict[str, Any]:
    from typing import TypedDict

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    n, fail_at = cfg.w4_nodes, cfg.w4_fail_at
    calls, hit = _probe(n, fail_at)

    class Counter(TypedDict):
        count: int

    def make(i: int) -> Any:
        async def node(s: Counter) -> dict:
            hit(i)
            return {"count": s["count"] + 1}

        return node

    b = StateGraph(Counter)
    for i in range(n):
        b.add_node(f"n{i}", make(i))
    b.add_edge(START, "n0")
    for i in range(n - 1):
        b.add_edge(f"n{i}", f"n{i + 1}")
    b.add_edge(f"n{n - 1}", END)
    config = {"configurable": {"thread_id": "w4"}, "recursion_limit": n + 10}
    with scratch("w4-lg") as d:
        path = str(d / "lg.db")
        async with AsyncSqliteSaver.from_conn_string(path) as saver:
            try:
                await b.compile(checkpointer=saver).ainvoke({"count": 0}, config)
                raise AssertionError("the run should have failed")
            except Boom:
                pass
        with Clock() as c:
            async with AsyncSqliteSaver.from_conn_string(path) as saver:
                r = await b.compile(checkpointer=saver).ainvoke(None, config)
        assert r["count"] == n, r
    return _result(calls, n, fail_at, c.s)


async def burr(cfg: Sizes = FULL) -> dict[str, Any]:
    from burr.core import ApplicationBuilder, State, action
    from burr.core.graph import GraphBuilder
    from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

    n, fail_at = cfg.w4_nodes, cfg.w4_fail_at
    calls, hit = _probe(n, fail_at)

    def make(i: int) -> Any:
        @action(reads=["count"], writes=["count"])
        async def node(state: State) -> State:
            hit(i)
            return state.update(count=state["count"] + 1)

        return node

    graph = (
        GraphBuilder()
        .with_actions(**{f"n{i}": make(i) for i in range(n)})
        .with_transitions(*[(f"n{i}", f"n{i + 1}") for i in range(n - 1)])
        .build()
    )

    async def app_on(persister: Any) -> Any:
        return await (
            ApplicationBuilder()
            .with_graph(graph)
            .initialize_from(
                persister,
                resume_at_next_action=True,
                default_state={"count": 0},
                default_entrypoint="n0",
            )
            .with_state_persister(persister)
            .with_identifiers(app_id="w4")
            .abuild()
        )

    with scratch("w4-burr") as d:
        path = str(d / "burr.db")
        persister = await AsyncSQLitePersister.from_values(db_path=path)
        await persister.initialize()
        try:
            await (await app_on(persister)).arun(halt_after=[f"n{n - 1}"])
            raise AssertionError("the run should have failed")
        except Boom:
            pass
        finally:
            await persister.cleanup()
        with Clock() as c:
            persister = await AsyncSQLitePersister.from_values(db_path=path)
            await persister.initialize()
            try:
                _, _, state = await (await app_on(persister)).arun(halt_after=[f"n{n - 1}"])
            finally:
                await persister.cleanup()
        assert state["count"] == n, state
    return _result(calls, n, fail_at, c.s)


async def dbos(cfg: Sizes = FULL) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with scratch("w4-dbos") as d:
        for label, url, schema in dbos_backends(str(d)):
            r = in_child(__file__, cfg.w4_nodes, cfg.w4_fail_at, url, schema or "")
            out |= r if label == "sqlite" else {f"pg_{k}": v for k, v in r.items()}
    return out


async def _dbos_child(n: int, fail_at: int, url: str, schema: str | None) -> dict[str, Any]:
    from dbos import DBOS, SetWorkflowID

    calls, hit = _probe(n, fail_at)

    @DBOS.step()
    async def node(i: int, count: int) -> int:
        hit(i)
        return count + 1

    @DBOS.workflow()
    async def chain(n: int) -> int:
        count = 0
        for i in range(n):
            count = await node(i, count)
        return count

    config: Any = dbos_config("bench-w4", url, schema)
    DBOS(config=config)
    DBOS.launch()
    # stored in the system database: the relaunched queue thread serves it at once
    await DBOS.register_queue_async("bench_w4", polling_interval_sec=0.01)
    try:
        with SetWorkflowID("w4"):
            await chain(n)
        raise AssertionError("the workflow should have failed")
    except Boom:
        pass
    finally:
        DBOS.destroy()
    try:
        with Clock() as c:
            DBOS(config=config)
            DBOS.launch()
            steps = await DBOS.list_workflow_steps_async("w4")
            failed = next(s["function_id"] for s in steps if s["error"] is not None)
            handle = await DBOS.fork_workflow_async("w4", failed, queue_name="bench_w4")
            r = await handle.get_result(polling_interval_sec=0.01)
    finally:
        DBOS.destroy()
    assert r == n, r
    return _result(calls, n, fail_at, c.s)


if __name__ == "__main__" and sys.argv[1:2] == ["--dbos-child"]:
    import asyncio
    import json

    a = sys.argv[2:]
    print(json.dumps(asyncio.run(_dbos_child(int(a[0]), int(a[1]), a[2], a[3] or None))))
