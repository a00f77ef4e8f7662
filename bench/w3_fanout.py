"""W3 fan-out: one node fans out to B branches, each awaiting ``asyncio.sleep(0.01)``; a join
then counts them. The metric is the wall time of one whole run (ideal ≈ the sleep, 10 ms).

- flowstate: a router after ``fanout`` returns ``[Send("branch", i) for i in range(B)]``
  (``targets=["branch"]``); branches append to a reducer field; edge ``branch -> count``.
- LangGraph: the same with its ``Send`` API and an ``operator.add`` channel.
- Burr: its documented parallelism primitive, a ``MapStates`` action (async) mapping the
  ``branch`` action over B states and reducing them, followed by a ``count`` action.

(a) no persistence — judged against the target (flowstate: ``compile(store=InMemoryStore())``).
(b) SQLite checkpoints at each engine's default granularity — for information (Burr's
sub-applications inherit the persister).
"""

import asyncio
from typing import Any

from _common import FULL, Clock, Sizes, scratch

INNER = 3


async def _time(run: Any, check: Any) -> float:
    check(await run())  # warm-up
    total = 0.0
    for _ in range(INNER):
        with Clock() as c:
            out = await run()
        check(out)
        total += c.s
    return total / INNER * 1000


def _fs_graph(cfg: Sizes) -> Any:
    from typing import Annotated

    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder, Send, append

    n, pause = cfg.w3_branches, cfg.w3_sleep

    class Fan(BaseModel):
        done: Annotated[list[int], append] = []
        total: int = 0

    async def fanout(s: Fan) -> None:
        return None

    def spread(s: Fan) -> list:
        return [Send("branch", i) for i in range(n)]

    async def branch(i: int) -> dict:
        await asyncio.sleep(pause)
        return {"done": [i]}

    async def count(s: Fan) -> dict:
        return {"total": len(s.done)}

    g = GraphBuilder(Fan, name="w3_fanout")
    g.add_node(fanout)
    g.add_node(branch)
    g.add_node(count)
    g.add_edge(START, "fanout")
    g.add_conditional_edges("fanout", spread, targets=["branch"])
    g.add_edge("branch", "count")
    g.add_edge("count", END)
    return g


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    n = cfg.w3_branches
    g = _fs_graph(cfg)

    def check(r: Any) -> None:
        assert r.status == "completed" and r.state.total == n, r

    out: dict[str, Any] = {}
    from flowstate.checkpoints import InMemoryStore

    app = g.compile(store=InMemoryStore(), max_steps=10 * n)
    out["a_ms"] = await _time(lambda: app.run({}), check)
    with scratch("w3-fs") as d:
        app = g.compile(store=str(d / "fs.db"), max_steps=10 * n)
        out["b_ms"] = await _time(lambda: app.run({}), check)
        app.store.close()
    return out


async def langgraph(cfg: Sizes = FULL) -> dict[str, Any]:
    import operator
    from typing import Annotated, TypedDict

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    n, pause = cfg.w3_branches, cfg.w3_sleep

    class Fan(TypedDict):
        done: Annotated[list[int], operator.add]
        total: int

    async def fanout(s: Fan) -> dict:
        return {}

    def spread(s: Fan) -> list:
        return [Send("branch", i) for i in range(n)]

    async def branch(i: int) -> dict:
        await asyncio.sleep(pause)
        return {"done": [i]}

    async def count(s: Fan) -> dict:
        return {"total": len(s["done"])}

    b = StateGraph(Fan)
    b.add_node("fanout", fanout)
    b.add_node("branch", branch)
    b.add_node("count", count)
    b.add_edge(START, "fanout")
    b.add_conditional_edges("fanout", spread, ["branch"])
    b.add_edge("branch", "count")
    b.add_edge("count", END)

    def check(r: Any) -> None:
        assert r["total"] == n, r

    k = 0

    def config() -> dict[str, Any]:
        nonlocal k
        k += 1
        return {"configurable": {"thread_id": f"w3-{k}"}}

    out: dict[str, Any] = {}
    graph = b.compile()
    out["a_ms"] = await _time(lambda: graph.ainvoke({"done": [], "total": 0}), check)
    with scratch("w3-lg") as d:
        async with AsyncSqliteSaver.from_conn_string(str(d / "lg.db")) as saver:
            graph = b.compile(checkpointer=saver)
            out["b_ms"] = await _time(
                lambda: graph.ainvoke({"done": [], "total": 0}, config()), check
            )
    return out


async def burr(cfg: Sizes = FULL) -> dict[str, Any]:
    from burr.core import ApplicationBuilder, State, action
    from burr.core.parallelism import MapStates
    from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

    n, pause = cfg.w3_branches, cfg.w3_sleep

    @action(reads=["i"], writes=["done"])
    async def branch(state: State) -> State:
        await asyncio.sleep(pause)
        return state.update(done=[state["i"]])

    class Fanout(MapStates):
        def action(self, state: State, inputs: dict[str, Any]) -> Any:
            return branch

        async def states(self, state: State, context: Any, inputs: dict[str, Any]) -> Any:
            for i in range(n):
                yield state.update(i=i)

        async def reduce(self, state: State, states: Any) -> State:
            done: list[int] = []
            async for sub in states:
                done.extend(sub["done"])
            return state.update(done=done)

        def is_async(self) -> bool:
            return True

        @property
        def reads(self) -> list[str]:
            return []

        @property
        def writes(self) -> list[str]:
            return ["done"]

    @action(reads=["done"], writes=["total"])
    async def count(state: State) -> State:
        return state.update(total=len(state["done"]))

    k = 0

    async def run(persister: Any) -> State:
        nonlocal k
        k += 1
        b = (
            ApplicationBuilder()
            .with_actions(fanout=Fanout(), count=count)
            .with_transitions(("fanout", "count"))
            .with_identifiers(app_id=f"w3-{k}")
        )
        if persister is None:
            b = b.with_state(done=[], total=0).with_entrypoint("fanout")
        else:
            b = b.initialize_from(
                persister,
                resume_at_next_action=True,
                default_state={"done": [], "total": 0},
                default_entrypoint="fanout",
            ).with_state_persister(persister)
        app = await b.abuild()
        _, _, state = await app.arun(halt_after=["count"])
        return state

    def check(s: State) -> None:
        assert s["total"] == n, s

    out: dict[str, Any] = {"a_ms": await _time(lambda: run(None), check)}
    with scratch("w3-burr") as d:
        persister = await AsyncSQLitePersister.from_values(db_path=str(d / "burr.db"))
        await persister.initialize()
        try:
            out["b_ms"] = await _time(lambda: run(persister), check)
        finally:
            await persister.cleanup()
    return out
