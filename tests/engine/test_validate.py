"""Build-time validation (RELIABILITY.md G8, R7): every problem at once, each with a fix."""

from __future__ import annotations

import sqlite3
from typing import Annotated, Literal, TypedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, GraphBuildError, append


class S(BaseModel):
    n: int = 0
    notes: list[str] = []
    log: Annotated[list[str], append] = []


def a(s: S) -> dict:
    return {"n": 1}


def b(s: S) -> dict:
    return {"n": 2}


class WritesNotes(TypedDict):
    notes: list[str]


class WritesMissing(TypedDict):
    nope: int


class WrongType(TypedDict):
    n: str


class BadView(BaseModel):
    missing: int


class TypedView(BaseModel):
    n: str


def w1(s: S) -> WritesNotes:
    return {"notes": ["1"]}


def w2(s: S) -> WritesNotes:
    return {"notes": ["2"]}


def route_none(s: S):  # no annotation, no targets
    return "a"


def route_ab(s: S) -> Literal["a", "b"]:
    return "a"


def chain(*names: str) -> GraphBuilder[S]:
    g = GraphBuilder(S, name="t")
    fns = {"a": a, "b": b, "w1": w1, "w2": w2}
    for n in names:
        g.add_node(n, fns.get(n, a))
    return g


def _case(n: int) -> tuple[GraphBuilder[S], str]:
    g = chain("a", "b")
    if n == 0:  # unknown edge target, with a suggestion
        g.add_edge(START, "a").add_edge("a", "bb").add_edge("b", END)
        return g, "edge 'a' -> 'bb' targets 'bb', which is not a node (did you mean 'b'?)"
    if n == 1:  # unknown edge source
        g.add_edge(START, "a").add_edge("a", END).add_edge("zz", "b").add_edge("b", END)
        return g, "starts at 'zz', which is not a node"
    if n == 2:  # nothing starts
        g.add_edge("a", "b").add_edge("b", END)
        return g, "nothing starts the graph: add_edge(START, 'first_node')"
    if n == 3:  # unreachable
        g.add_edge(START, "a").add_edge("a", END).add_edge("b", END)
        return g, "node 'b' is not reachable from START"
    if n == 4:  # dead end
        g.add_edge(START, "a").add_edge("a", "b")
        return g, "node 'b' has no outgoing edge"
    if n == 5:  # loop without exit
        g.add_edge(START, "a").add_edge("a", "b").add_edge("b", "a")
        return g, "cannot reach END (it is in a loop with no exit)"
    if n == 6:  # router with no declared targets
        g.add_edge(START, "a").add_conditional_edges("a", route_none).add_edge("b", END)
        return g, "router 'route_none' after 'a' declares no targets"
    if n == 7:  # router target unknown
        g.add_edge(START, "a").add_conditional_edges("a", route_ab, ["a", "c"])
        g.add_edge("b", END)
        return g, "router 'route_ab' after 'a' targets 'c'"
    if n == 8:  # reserved name
        g.add_node(END, a)
        g.add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
        return g, "'__end__' is reserved"
    if n == 9:  # duplicate node
        g.add_node("a", b)
        g.add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
        return g, "node 'a' is added twice"
    if n == 10:  # writes a field the state lacks
        g.add_node("m", lambda s: None)
        g2 = GraphBuilder(S, name="t")

        def missing(s: S) -> WritesMissing:
            return {"nope": 1}

        g2.add_node(missing).add_edge(START, "missing").add_edge("missing", END)
        return g2, "declares it writes 'nope', but S has no field 'nope'"
    if n == 11:  # writes a field with an incompatible type
        g2 = GraphBuilder(S, name="t")

        def wrong(s: S) -> WrongType:
            return {"n": "x"}

        g2.add_node(wrong).add_edge(START, "wrong").add_edge("wrong", END)
        return g2, "writes 'n' as <class 'str'> but S.n is <class 'int'>"
    if n == 12:  # view reads a field the state lacks
        g2 = GraphBuilder(S, name="t")

        def viewer(v: BadView) -> None:
            return None

        g2.add_node(viewer).add_edge(START, "viewer").add_edge("viewer", END)
        return g2, "reads 'missing' through view BadView"
    if n == 13:  # view type mismatch
        g2 = GraphBuilder(S, name="t")

        def viewer2(v: TypedView) -> None:
            return None

        g2.add_node(viewer2).add_edge(START, "viewer2").add_edge("viewer2", END)
        return g2, "reads 'n' as <class 'str'> but S.n is <class 'int'>"
    if n == 14:  # parallel writers without reducer
        g2 = chain("a", "w1", "w2")
        g2.add_edge(START, "a").add_edge("a", "w1").add_edge("a", "w2")
        g2.add_edge("w1", END).add_edge("w2", END)
        return g2, "'w1' and 'w2' can run in the same step (after 'a') and both write 'notes'"
    if n == 15:  # join from unknown source
        g.add_edge(START, "a").add_edge(["a", "ghost"], "b").add_edge("b", END)
        return g, "waits for 'ghost', which is not a node"
    if n == 16:  # undeclared goto target
        g2 = GraphBuilder(S, name="t")
        g2.add_node("a", a, goto=["nowhere"]).add_edge(START, "a").add_edge("a", END)
        return g2, "node 'a' (goto) targets 'nowhere'"
    if n == 17:  # edge into START
        g.add_edge(START, "a").add_edge("a", START).add_edge("b", END)
        return g, "targets START, which cannot be entered"
    raise IndexError(n)


N_CASES = 18


@pytest.mark.parametrize("case", range(N_CASES))
def test_enumerated_malformed_graphs(case, tmp_path):
    g, expected = _case(case)
    db = tmp_path / "x.db"
    with pytest.raises(GraphBuildError) as e:
        g.compile(store=str(db))
    assert expected in str(e.value), str(e.value)
    assert str(e.value).startswith("FS101: ")
    assert not db.exists()  # compile() failed before any store was opened


def test_all_problems_are_reported_at_once():
    g = GraphBuilder(S, name="research_agent")
    g.add_node(a).add_node(b).add_node("summarize", a)
    g.add_edge(START, "a").add_edge("a", "bb").add_edge("b", END)
    g.add_conditional_edges("b", route_none)
    with pytest.raises(GraphBuildError) as e:
        g.compile(store=":memory:")
    assert len(e.value.problems) == 2
    assert "2 problems in graph 'research_agent'" in str(e.value)
    assert "(1)" in str(e.value) and "(2)" in str(e.value)


def test_breakpoint_on_unknown_node():
    g = chain("a").add_edge(START, "a").add_edge("a", END)
    with pytest.raises(GraphBuildError, match="breakpoint on unknown node 'x'"):
        g.compile(store=":memory:", interrupt_before=["x"])


@st.composite
def random_graphs(draw):
    """Arbitrary (often invalid) graphs over up to 6 nodes."""
    names = [f"n{i}" for i in range(draw(st.integers(1, 6)))]
    pool = [START, END, *names, "ghost"]
    edges = draw(st.lists(st.tuples(st.sampled_from(pool), st.sampled_from(pool)), max_size=12))
    return names, edges


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=random_graphs())
def test_random_graphs_either_fail_to_compile_or_run_to_end(spec, fast_tmp):
    names, edges = spec
    g = GraphBuilder(S, name="rand")
    for n in names:

        def node(s: S, _n: str = n) -> dict:
            return {"log": [_n]}

        g.add_node(n, node)
    for s, d in edges:
        g.add_edge(s, d)
    import uuid

    db = fast_tmp / f"r-{uuid.uuid4().hex}.db"  # the fixture is shared by all examples
    try:
        app = g.compile(store=str(db), max_steps=200)
    except GraphBuildError as e:
        assert e.problems
        assert not db.exists()
        return
    r = app.run_sync({})
    assert r.status in ("completed", "paused")  # paused only by the step limit (cycles)
    if r.status == "paused":
        assert "max_steps" in (r.reason or "")
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM runs").fetchone()[0] >= 1
