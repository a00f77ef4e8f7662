"""W6 long run: one node looping S times through a router, each step appending a short string
to a list field (the state grows to S items), with SQLite checkpoints at each engine's
default granularity.

Each node call records ``time.perf_counter()``; the per-step time is the gap between
consecutive calls. Reports the mean per-step time over the first W and the last W steps and
their ratio (the target), the same with medians (robust to the occasional I/O stall of an
SQLite checkpoint or fsync), the total time, and — in a separate run under ``tracemalloc``
(``memory=True``) — the peak traced memory. The router also stops the loop once the run
has taken longer than the budget (60 s): an engine that cannot do S steps in that time
reports the steps it did (``truncated``); ``run.py`` then measures it with fewer steps.

- flowstate: one node and a router back to it, ``max_steps=2 × S``.
- LangGraph: one node and a conditional edge back to it, ``recursion_limit = S + 10``.
- Burr: one action with a ``Condition`` transition back to itself and a terminal no-op
  action (Burr has no END).
"""

import statistics
import time
import tracemalloc
from typing import Any

from _common import FULL, Sizes, scratch


def _item(i: int) -> str:
    return f"item-{i:06d}"


class _Probe:
    def __init__(self, steps: int, budget: float) -> None:
        self.steps = steps
        self.budget = budget
        self.stamps: list[float] = []
        self.deadline = 0.0

    def start(self) -> None:
        self.deadline = time.perf_counter() + self.budget

    def tick(self) -> None:
        self.stamps.append(time.perf_counter())

    def more(self, have: int) -> bool:
        return have < self.steps and time.perf_counter() < self.deadline

    def result(self, cfg: Sizes, total: float, final_len: int, memory: bool) -> dict[str, Any]:
        assert final_len == len(self.stamps), (final_len, len(self.stamps))
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        w = min(cfg.w6_window, max(1, len(gaps) // 2))
        first = sum(gaps[:w]) / w
        last = sum(gaps[-w:]) / w
        first_med = statistics.median(gaps[:w])
        last_med = statistics.median(gaps[-w:])
        out: dict[str, Any] = {
            "steps": len(self.stamps),
            "truncated": len(self.stamps) < cfg.w6_steps,
            "window": w,
            "first_us": first * 1e6,
            "last_us": last * 1e6,
            "last_over_first": last / first,
            "first_med_us": first_med * 1e6,
            "last_med_us": last_med * 1e6,
            "med_last_over_first": last_med / first_med,
            "total_s": total,
        }
        if memory:
            out["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        return out


async def _measure(cfg: Sizes, probe: _Probe, run: Any, memory: bool) -> dict[str, Any]:
    if memory:
        tracemalloc.start()
    try:
        probe.start()
        t0 = time.perf_counter()
        final_len = await run()
        total = time.perf_counter() - t0
        return probe.result(cfg, total, final_len, memory)
    finally:
        if memory:
            tracemalloc.stop()


async def flowstate(
    cfg: Sizes = FULL, *, steps: int | None = None, memory: bool = False
) -> dict[str, Any]:
    from typing import Annotated

    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder, append

    probe = _Probe(steps or cfg.w6_steps, cfg.w6_budget_s * (2 if memory else 1))

    class Long(BaseModel):
        items: Annotated[list[str], append] = []

    async def step(s: Long) -> dict:
        probe.tick()
        return {"items": [_item(len(s.items))]}

    def again(s: Long) -> str:
        return "step" if probe.more(len(s.items)) else END

    g = GraphBuilder(Long, name="w6_long")
    g.add_node(step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", again, targets=["step", END])
    with scratch("w6-fs") as d:
        app = g.compile(store=str(d / "fs.db"), max_steps=2 * cfg.w6_steps)

        async def run() -> int:
            r = await app.run({})
            assert r.status == "completed", r
            return len(r.state.items)

        try:
            return await _measure(cfg, probe, run, memory)
        finally:
            app.store.close()


async def langgraph(
    cfg: Sizes = FULL, *, steps: int | None = None, memory: bool = False
) -> dict[str, Any]:
    import operator
    from typing import Annotated, TypedDict

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    probe = _Probe(steps or cfg.w6_steps, cfg.w6_budget_s * (2 if memory else 1))

    class Long(TypedDict):
        items: Annotated[list[str], operator.add]

    async def step(s: Long) -> dict:
        probe.tick()
        return {"items": [_item(len(s["items"]))]}

    def again(s: Long) -> str:
        return "step" if probe.more(len(s["items"])) else END

    b = StateGraph(Long)
    b.add_node("step", step)
    b.add_edge(START, "step")
    b.add_conditional_edges("step", again, ["step", END])
    config = {"configurable": {"thread_id": "w6"}, "recursion_limit": cfg.w6_steps + 10}
    with scratch("w6-lg") as d:
        async with AsyncSqliteSaver.from_conn_string(str(d / "lg.db")) as saver:
            graph = b.compile(checkpointer=saver)

            async def run() -> int:
                r = await graph.ainvoke({"items": []}, config)
                return len(r["items"])

            return await _measure(cfg, probe, run, memory)


async def burr(
    cfg: Sizes = FULL, *, steps: int | None = None, memory: bool = False
) -> dict[str, Any]:
    from burr.core import ApplicationBuilder, Condition, State, action, default
    from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

    probe = _Probe(steps or cfg.w6_steps, cfg.w6_budget_s * (2 if memory else 1))

    @action(reads=["items"], writes=["items"])
    async def step(state: State) -> State:
        probe.tick()
        return state.append(items=_item(len(state["items"])))

    @action(reads=[], writes=[])
    async def done(state: State) -> State:
        return state

    again = Condition(["items"], lambda s: probe.more(len(s["items"])), name="again")
    with scratch("w6-burr") as d:
        persister = await AsyncSQLitePersister.from_values(db_path=str(d / "burr.db"))
        await persister.initialize()

        async def run() -> int:
            app = await (
                ApplicationBuilder()
                .with_actions(step=step, done=done)
                .with_transitions(("step", "step", again), ("step", "done", default))
                .initialize_from(
                    persister,
                    resume_at_next_action=True,
                    default_state={"items": []},
                    default_entrypoint="step",
                )
                .with_state_persister(persister)
                .with_identifiers(app_id="w6")
                .abuild()
            )
            _, _, state = await app.arun(halt_after=["done"])
            return len(state["items"])

        try:
            return await _measure(cfg, probe, run, memory)
        finally:
            await persister.cleanup()
