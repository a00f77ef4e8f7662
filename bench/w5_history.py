"""W5 history: after an N-node chain run with SQLite checkpoints, list the run's history and
load the state at step K (the state after K nodes, ``count == K``). Fresh engine objects on
a fresh connection do the reading. Reports both times and the number of history entries.

- flowstate: ``app.history(run_id)``; ``app.state_at(run_id, K)``.
- LangGraph: ``graph.aget_state_history(config)``; the snapshot at step K via
  ``aget_state_history(config, filter={"step": K})`` (a metadata filter done in SQL) — its
  step K is the checkpoint after K nodes, as flowstate's.
- Burr: the persister has no per-run listing, only ``list_app_ids`` and ``load`` by
  sequence id: the history is ``load(…, sequence_id=s)`` for every s; the state after K
  actions is ``load(…, sequence_id=K - 1)``.
"""

from typing import Any

from _common import FULL, Clock, Sizes, scratch

INNER = 3


def _result(list_s: float, at_s: float, entries: int) -> dict[str, Any]:
    return {
        "history_ms": list_s * 1000 / INNER,
        "state_at_ms": at_s * 1000 / INNER,
        "entries": entries,
    }


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder

    n, k = cfg.w5_nodes, cfg.w5_at

    class Counter(BaseModel):
        count: int = 0

    async def inc(s: Counter) -> dict:
        return {"count": s.count + 1}

    g = GraphBuilder(Counter, name="w5_history")
    for i in range(n):
        g.add_node(f"n{i}", inc)
    g.add_edge(START, "n0")
    for i in range(n - 1):
        g.add_edge(f"n{i}", f"n{i + 1}")
    g.add_edge(f"n{n - 1}", END)
    with scratch("w5-fs") as d:
        path = str(d / "fs.db")
        app = g.compile(store=path, max_steps=10 * n)
        await app.run({"count": 0}, run_id="w5")
        app.store.close()
        app = g.compile(store=path, max_steps=10 * n)
        app.history("w5")  # warm-up: opens the connection
        with Clock() as c1:
            for _ in range(INNER):
                hist = app.history("w5")
        with Clock() as c2:
            for _ in range(INNER):
                st = app.state_at("w5", k)
        assert st.count == k, st
        app.store.close()
    return _result(c1.s, c2.s, len(hist))


async def langgraph(cfg: Sizes = FULL) -> dict[str, Any]:
    from typing import TypedDict

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    n, k = cfg.w5_nodes, cfg.w5_at

    class Counter(TypedDict):
        count: int

    async def inc(s: Counter) -> dict:
        return {"count": s["count"] + 1}

    b = StateGraph(Counter)
    for i in range(n):
        b.add_node(f"n{i}", inc)
    b.add_edge(START, "n0")
    for i in range(n - 1):
        b.add_edge(f"n{i}", f"n{i + 1}")
    b.add_edge(f"n{n - 1}", END)
    config = {"configurable": {"thread_id": "w5"}, "recursion_limit": n + 10}
    with scratch("w5-lg") as d:
        path = str(d / "lg.db")
        async with AsyncSqliteSaver.from_conn_string(path) as saver:
            await b.compile(checkpointer=saver).ainvoke({"count": 0}, config)
        async with AsyncSqliteSaver.from_conn_string(path) as saver:
            graph = b.compile(checkpointer=saver)
            await graph.aget_state(config)  # warm-up: opens the connection
            with Clock() as c1:
                for _ in range(INNER):
                    hist = [s async for s in graph.aget_state_history(config)]
            with Clock() as c2:
                for _ in range(INNER):
                    snaps = [s async for s in graph.aget_state_history(config, filter={"step": k})]
            assert len(snaps) == 1 and snaps[0].values["count"] == k, snaps
    return _result(c1.s, c2.s, len(hist))


async def burr(cfg: Sizes = FULL) -> dict[str, Any]:
    from burr.core import ApplicationBuilder, State, action
    from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

    n, k = cfg.w5_nodes, cfg.w5_at

    @action(reads=["count"], writes=["count"])
    async def inc(state: State) -> State:
        return state.update(count=state["count"] + 1)

    with scratch("w5-burr") as d:
        path = str(d / "burr.db")
        persister = await AsyncSQLitePersister.from_values(db_path=path)
        await persister.initialize()
        try:
            app = await (
                ApplicationBuilder()
                .with_actions(**{f"n{i}": inc for i in range(n)})
                .with_transitions(*[(f"n{i}", f"n{i + 1}") for i in range(n - 1)])
                .initialize_from(
                    persister,
                    resume_at_next_action=True,
                    default_state={"count": 0},
                    default_entrypoint="n0",
                )
                .with_state_persister(persister)
                .with_identifiers(app_id="w5")
                .abuild()
            )
            await app.arun(halt_after=[f"n{n - 1}"])
        finally:
            await persister.cleanup()
        persister = await AsyncSQLitePersister.from_values(db_path=path)
        try:
            await persister.list_app_ids("")  # warm-up: opens the connection
            with Clock() as c1:
                for _ in range(INNER):
                    ids = await persister.list_app_ids("")
                    assert ids == ["w5"], ids
                    hist = []
                    seq = 0
                    while (row := await persister.load("", "w5", sequence_id=seq)) is not None:
                        hist.append(row)
                        seq += 1
            with Clock() as c2:
                for _ in range(INNER):
                    row = await persister.load("", "w5", sequence_id=k - 1)
            assert row is not None and row["state"]["count"] == k, row
        finally:
            await persister.cleanup()
    return _result(c1.s, c2.s, len(hist))
