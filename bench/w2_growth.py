"""W2 state growth: one node looping N times, each step appending a C-character string to a
list field, with SQLite checkpoints at each engine's default granularity.

Reports the wall time of the run and the database's bytes (file + -wal + -shm + -journal):
``db_bytes_open`` right after the run with the engine's connection still open (what a live
service carries), ``db_wal_bytes_open`` the same without the ``-shm`` index (32 kB for any
WAL database; the target is judged on it), ``db_bytes_closed`` after the connection is
closed (SQLite checkpoints and removes the WAL on the last close). ``appended_bytes`` is
N × C, the payload the run actually added.
"""

import pathlib
from typing import Any

from _common import FULL, Clock, Sizes, db_bytes, payload, scratch, sqlite_mode


def _shm(path: pathlib.Path) -> int:
    p = pathlib.Path(f"{path}-shm")
    return p.stat().st_size if p.exists() else 0


def _items(n: int, chars: int) -> list[str]:
    return [payload(i, chars) for i in range(n)]


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    n = cfg.w2_steps
    seconds, opened, closed, mode, shm = await _fs_run(n, cfg.w2_chars)
    out = _result(cfg, seconds, opened, closed, mode, shm)
    # the marginal growth: what the second half of the steps added to the closed file
    _, _, half, _, _ = await _fs_run(n // 2, cfg.w2_chars)
    out["marginal_over_appended"] = (closed - half) / ((n - n // 2) * cfg.w2_chars)
    return out


async def _fs_run(n: int, chars: int) -> tuple[float, int, int, str, int]:
    """One flowstate run of ``n`` steps on a fresh file: seconds, bytes with the
    connection open, bytes after close, journal mode, the ``-shm`` file's bytes."""
    from typing import Annotated

    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder, append

    items = _items(n, chars)

    class Growth(BaseModel):
        items: Annotated[list[str], append] = []

    async def grow(s: Growth) -> dict:
        return {"items": [items[len(s.items)]]}

    def again(s: Growth) -> str:
        return "grow" if len(s.items) < n else END

    g = GraphBuilder(Growth, name="w2_growth")
    g.add_node(grow)
    g.add_edge(START, "grow")
    g.add_conditional_edges("grow", again, targets=["grow", END])
    with scratch("w2-fs") as d:
        path = d / "fs.db"
        app = g.compile(store=str(path), max_steps=10 * n)
        with Clock() as c:
            r = await app.run({})
        assert r.status == "completed" and r.state.items == items
        opened = db_bytes(path)
        shm = _shm(path)
        mode = sqlite_mode(path)
        app.store.close()
        closed = db_bytes(path)
    return c.s, opened, closed, mode, shm


async def langgraph(cfg: Sizes = FULL) -> dict[str, Any]:
    import operator
    from typing import Annotated, TypedDict

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    n, items = cfg.w2_steps, _items(cfg.w2_steps, cfg.w2_chars)

    class Growth(TypedDict):
        items: Annotated[list[str], operator.add]

    async def grow(s: Growth) -> dict:
        return {"items": [items[len(s["items"])]]}

    def again(s: Growth) -> str:
        return "grow" if len(s["items"]) < n else END

    b = StateGraph(Growth)
    b.add_node("grow", grow)
    b.add_edge(START, "grow")
    b.add_conditional_edges("grow", again, ["grow", END])
    with scratch("w2-lg") as d:
        path = d / "lg.db"
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            graph = b.compile(checkpointer=saver)
            cfgd = {"configurable": {"thread_id": "w2"}, "recursion_limit": n + 10}
            with Clock() as c:
                r = await graph.ainvoke({"items": []}, cfgd)
            assert r["items"] == items
            opened = db_bytes(path)
            shm = _shm(path)
            mode = sqlite_mode(path)
        closed = db_bytes(path)
    return _result(cfg, c.s, opened, closed, mode, shm)


async def burr(cfg: Sizes = FULL) -> dict[str, Any]:
    from burr.core import ApplicationBuilder, Condition, State, action, default
    from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

    n, items = cfg.w2_steps, _items(cfg.w2_steps, cfg.w2_chars)

    @action(reads=["items"], writes=["items"])
    async def grow(state: State) -> State:
        return state.append(items=items[len(state["items"])])

    @action(reads=[], writes=[])
    async def done(state: State) -> State:  # Burr has no END: a terminal no-op action
        return state

    again = Condition(["items"], lambda s: len(s["items"]) < n, name="again")
    with scratch("w2-burr") as d:
        path = d / "burr.db"
        persister = await AsyncSQLitePersister.from_values(db_path=str(path))
        await persister.initialize()
        try:
            with Clock() as c:
                app = await (
                    ApplicationBuilder()
                    .with_actions(grow=grow, done=done)
                    .with_transitions(("grow", "grow", again), ("grow", "done", default))
                    .initialize_from(
                        persister,
                        resume_at_next_action=True,
                        default_state={"items": []},
                        default_entrypoint="grow",
                    )
                    .with_state_persister(persister)
                    .with_identifiers(app_id="w2")
                    .abuild()
                )
                _, _, state = await app.arun(halt_after=["done"])
            assert list(state["items"]) == items
            opened = db_bytes(path)
            shm = _shm(path)
            mode = sqlite_mode(path)
        finally:
            await persister.cleanup()
        closed = db_bytes(path)
    return _result(cfg, c.s, opened, closed, mode, shm)


def _result(
    cfg: Sizes, seconds: float, opened: int, closed: int, mode: str, shm: int
) -> dict[str, Any]:
    appended = cfg.w2_steps * cfg.w2_chars
    return {
        "time_ms": seconds * 1000,
        "db_bytes_open": opened,
        "db_wal_bytes_open": opened - shm,
        "db_bytes_closed": closed,
        "appended_bytes": appended,
        "open_over_appended": opened / appended,
        "journal_mode": mode,
    }
