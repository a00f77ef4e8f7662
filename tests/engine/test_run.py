"""Running graphs: BSP steps, reducers, joins, routers, views, limits."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from typing import Annotated, Literal, TypedDict

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, UpdateRejected, add, append, merge
from flowstate.engine import RouteError
from flowstate.errors import NodeFailed, WriteConflict


class S(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []
    total: Annotated[int, add] = 0
    tags: Annotated[dict[str, int], merge] = {}


def test_chain_reducers_and_final_state(db_path):
    def a(s: S) -> dict:
        return {"n": s.n + 1, "log": "a", "total": 2, "tags": {"a": 1}}

    async def b(s: S) -> dict:
        return {"n": s.n * 10, "log": ["b1", "b2"], "total": 3, "tags": {"b": 2}}

    g = GraphBuilder(S).add_node(a).add_node(b)
    g.add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
    r = g.compile(store=str(db_path)).run_sync({"n": 1})
    assert r.status == "completed"
    assert r.state == S(n=20, log=["a", "b1", "b2"], total=5, tags={"a": 1, "b": 2})


def test_activations_of_a_step_see_the_same_input_and_merge_in_task_order(db_path):
    seen: dict[str, int] = {}

    def fan(s: S) -> dict:
        return {"n": 1}

    def make(name: str):
        async def node(s: S) -> dict:
            seen[name] = s.n
            await asyncio.sleep(random.random() * 0.02)  # finish in random order
            return {"log": name, "total": 1}

        node.__name__ = name
        return node

    g = GraphBuilder(S).add_node(fan)
    names = ["p", "q", "r", "s"]
    for n in names:
        g.add_node(make(n))
        g.add_edge("fan", n)
        g.add_edge(n, END)
    g.add_edge(START, "fan")
    app = g.compile(store=str(db_path))
    for _ in range(5):
        r = app.run_sync({})
        assert r.state.log == names  # declaration order, whatever the timing
        assert r.state.total == 4
        assert set(seen.values()) == {1}


def test_join_waits_for_all_sources_across_steps(db_path):
    order: list[str] = []

    def mk(name: str):
        def node(s: S) -> dict:
            order.append(name)
            return {"log": name}

        node.__name__ = name
        return node

    g = GraphBuilder(S)
    for n in ["start", "short", "long1", "long2", "joined"]:
        g.add_node(mk(n))
    g.add_edge(START, "start").add_edge("start", "short").add_edge("start", "long1")
    g.add_edge("long1", "long2").add_edge(["short", "long2"], "joined").add_edge("joined", END)
    r = g.compile(store=str(db_path)).run_sync({})
    assert order.index("joined") > order.index("long2")
    assert r.state.log.count("joined") == 1


def test_conditional_loop_and_literal_targets(db_path):
    def inc(s: S) -> dict:
        return {"n": s.n + 1}

    def route(s: S) -> Literal["inc", "__end__"]:
        return "inc" if s.n < 5 else END

    g = GraphBuilder(S).add_node(inc).add_edge(START, "inc")
    g.add_conditional_edges("inc", route)
    r = g.compile(store=str(db_path)).run_sync({})
    assert r.state.n == 5


def test_router_static_fanout_list_and_mapping(db_path):
    def pick(s: S) -> list[str]:
        return ["x", "y"]

    def x(s: S) -> dict:
        return {"log": "x"}

    def y(s: S) -> dict:
        return {"log": "y"}

    def head(s: S) -> None:
        return None

    g = GraphBuilder(S).add_node(head).add_node(x).add_node(y)
    g.add_edge(START, "head").add_conditional_edges("head", pick, ["x", "y"])
    g.add_edge("x", END).add_edge("y", END)
    assert g.compile(store=str(db_path)).run_sync({}).state.log == ["x", "y"]

    def yes_no(s: S) -> bool:
        return s.n > 0

    g2 = GraphBuilder(S).add_node(head).add_node(x).add_node(y)
    g2.add_edge(START, "head").add_conditional_edges("head", yes_no, {True: "x", False: "y"})
    g2.add_edge("x", END).add_edge("y", END)
    app = g2.compile(store=str(db_path))
    assert app.run_sync({"n": 1}).state.log == ["x"]
    assert app.run_sync({"n": 0}).state.log == ["y"]


def test_undeclared_router_target_fails_naming_router(db_path):
    def head(s: S) -> None:
        return None

    def bad(s: S) -> Literal["head", "__end__"]:
        return "nowhere"  # type: ignore[return-value]

    g = GraphBuilder(S).add_node(head).add_edge(START, "head")
    g.add_conditional_edges("head", bad)
    # the router is blamed (FS209), not the node before it
    with pytest.raises(RouteError, match="router 'bad' after 'head' returned 'nowhere'"):
        g.compile(store=str(db_path)).run_sync({})


class View(BaseModel):
    n: int


class Out(TypedDict):
    log: list[str]


def test_view_input_and_typed_writes(db_path):
    got: list[object] = []

    def reader(v: View) -> Out:
        got.append(v)
        return {"log": [f"n={v.n}"]}

    g = GraphBuilder(S).add_node(reader).add_edge(START, "reader").add_edge("reader", END)
    r = g.compile(store=str(db_path)).run_sync({"n": 7})
    assert isinstance(got[0], View) and got[0].n == 7
    assert r.state.log == ["n=7"]


def test_undeclared_write_is_rejected(db_path):
    def sneaky(s: S) -> Out:
        return {"log": ["x"], "n": 3}  # type: ignore[typeddict-unknown-key]

    g = GraphBuilder(S).add_node(sneaky).add_edge(START, "sneaky").add_edge("sneaky", END)
    with pytest.raises(NodeFailed) as e:
        g.compile(store=str(db_path)).run_sync({})
    assert "'n'" in str(e.value) and "declares it writes only ['log']" in str(e.value)


def test_bad_update_names_node_field_and_type_and_commits_nothing(db_path):
    def ok(s: S) -> dict:
        return {"n": 1}

    def bad(s: S) -> dict:
        return {"n": "not a number"}

    g = GraphBuilder(S).add_node(ok).add_node(bad)
    g.add_edge(START, "ok").add_edge("ok", "bad").add_edge("bad", END)
    app = g.compile(store=str(db_path))
    with pytest.raises(NodeFailed) as e:
        app.run_sync({}, run_id="r1")
    msg = str(e.value)
    assert "'bad'" in msg and "'n'" in msg and "expected int" in msg
    assert isinstance(e.value.__cause__, UpdateRejected)
    assert [h.node for h in app.history("r1")] == ["ok"]
    assert app.get_state("r1").n == 1
    assert app.get_run("r1").status == "failed"


def test_sync_nodes_run_in_a_thread(db_path):
    threads: list[int] = []

    def a(s: S) -> None:
        threads.append(threading.get_ident())

    g = GraphBuilder(S).add_node(a).add_edge(START, "a").add_edge("a", END)
    g.compile(store=str(db_path)).run_sync({})
    assert threads and threads[0] != threading.get_ident()


def test_runtime_write_conflict_is_an_error_not_silent(db_path):
    def head(s: S) -> None:
        return None

    def x(s: S) -> dict:
        return {"n": 1}

    def y(s: S) -> dict:
        return {"n": 2}

    # dict return annotations hide the writes from build-time checks; runtime catches it
    g = GraphBuilder(S).add_node(head).add_node(x).add_node(y)
    g.add_edge(START, "head").add_edge("head", "x").add_edge("head", "y")
    g.add_edge("x", END).add_edge("y", END)
    with pytest.raises(NodeFailed) as e:
        g.compile(store=str(db_path)).run_sync({})
    assert isinstance(e.value.__cause__, WriteConflict)
    assert "'x', 'y' all wrote 'n'" in str(e.value)


def test_max_steps_pauses_and_names_the_loop_then_resumes(db_path):
    def spin(s: S) -> dict:
        return {"n": s.n + 1}

    def route(s: S) -> Literal["spin", "__end__"]:
        return "spin" if s.n < 30 else END

    g = GraphBuilder(S).add_node(spin).add_edge(START, "spin")
    g.add_conditional_edges("spin", route)
    app = g.compile(store=str(db_path), max_steps=10)
    r = app.run_sync({})
    assert r.status == "paused"
    assert "max_steps=10" in (r.reason or "") and "'spin' ran 10 times" in (r.reason or "")
    assert app.get_run(r.run_id).status == "paused"
    r2 = app.resume_sync(r.run_id, max_steps=100)
    assert r2.status == "completed" and r2.state.n == 30
    assert len(app.history(r.run_id)) == 30


def test_max_visits_pauses_at_exactly_n(db_path):
    def spin(s: S) -> dict:
        return {"n": s.n + 1}

    def route(s: S) -> Literal["spin", "__end__"]:
        return "spin" if s.n < 100 else END

    g = GraphBuilder(S).add_node(spin, max_visits=4).add_edge(START, "spin")
    g.add_conditional_edges("spin", route)
    r = g.compile(store=str(db_path)).run_sync({})
    assert r.status == "paused" and r.state.n == 4
    assert "max_visits" in (r.reason or "")


def test_stream_yields_typed_events_in_order(db_path):
    def a(s: S) -> dict:
        return {"n": 1}

    def b(s: S) -> dict:
        return {"n": 2}

    g = GraphBuilder(S).add_node(a).add_node(b)
    g.add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
    app = g.compile(store=str(db_path))

    async def collect() -> list:
        return [e async for e in app.stream({})]

    events = asyncio.run(collect())
    kinds = [e.kind for e in events]
    assert kinds == [
        "run_started",
        "node_started",
        "node_finished",
        "step_finished",
        "node_started",
        "node_finished",
        "step_finished",
        "run_finished",
    ]
    assert events[2].update == {"n": 1}
    assert json.loads(events[-1].model_dump_json())["status"] == "completed"


def test_history_and_state_at(db_path):
    def inc(s: S) -> dict:
        return {"n": s.n + 1, "log": str(s.n)}

    def route(s: S) -> Literal["inc", "__end__"]:
        return "inc" if s.n < 10 else END

    g = GraphBuilder(S).add_node(inc).add_edge(START, "inc")
    g.add_conditional_edges("inc", route)
    app = g.compile(store=str(db_path))
    r = app.run_sync({})
    hist = app.history(r.run_id)
    assert [h.step for h in hist] == list(range(10))
    for k in range(11):
        assert app.state_at(r.run_id, k).n == k
    assert app.get_state(r.run_id) == r.state
