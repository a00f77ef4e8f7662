"""Item 1 of issue 15: every activation reads its own input; an in-place mutation never
reaches the result, the stored state or a sibling, and fails the node by name."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flowstate import (
    END,
    START,
    GraphBuilder,
    NodeFailed,
    RetryPolicy,
    StateMutated,
    append,
)


class Inner(BaseModel):
    xs: list[int] = []


class S(BaseModel):
    log: Annotated[list[str], append] = []
    items: list[str] = []
    bag: dict[str, int] = {}
    inner: Inner = Inner()
    n: int = 0


class View(BaseModel):
    items: list[str] = []


def _app(tmp_path: Path, *nodes: Any, parallel: bool = False):
    g = GraphBuilder(S)
    for fn in nodes:
        g.add_node(fn)
    names = [fn.__name__ for fn in nodes]
    if parallel:
        for n in names:
            g.add_edge(START, n).add_edge(n, END)
    else:
        g.add_edge(START, names[0])
        for a, b in itertools.pairwise(names):
            g.add_edge(a, b)
        g.add_edge(names[-1], END)
    return g.compile(store=str(tmp_path / "x.db"))


def test_the_issues_example_fails_by_name_and_leaks_nothing(tmp_path):
    def a(s: S) -> dict:
        s.items.append("x")
        return {"n": 1}

    app = _app(tmp_path, a)
    with pytest.raises(NodeFailed) as e:
        app.run_sync({}, run_id="r")
    assert isinstance(e.value.__cause__, StateMutated)
    assert "node 'a' mutated 'items' in place: return {'items': [...]} instead" in str(e.value)
    assert app.get_state("r").items == []


def test_nested_and_view_mutations_and_assignments_are_caught(tmp_path):
    def deep(s: S) -> dict:
        s.inner.xs.append(1)
        return {"n": 1}

    def viewer(v: View) -> dict:
        v.items.append("v")
        return {"n": 2}

    def assigns(s: S) -> dict:
        s.bag = {"lost": 1}
        return {"n": 3}

    for fn, field in ((deep, "inner"), (viewer, "items"), (assigns, "bag")):
        sub = tmp_path / fn.__name__
        sub.mkdir()
        app = _app(sub, fn)
        with pytest.raises(NodeFailed, match=f"mutated '{field}' in place"):
            app.run_sync({"items": ["a"]}, run_id="r")
        st_ = app.get_state("r")
        assert st_.items == ["a"] and st_.inner.xs == [] and st_.bag == {}


def test_mutating_and_returning_a_field_is_an_update(tmp_path):
    def a(s: S) -> dict:
        s.items.append("x")
        return {"items": s.items}

    def b(s: S) -> dict:
        return {"log": [f"b saw {s.items}"]}

    r = _app(tmp_path, a, b).run_sync({"items": ["0"]}, run_id="r")
    assert r.state.items == ["0", "x"] and r.state.log == ["b saw ['0', 'x']"]


def test_a_sibling_never_sees_a_mutation_whatever_the_timing(tmp_path):
    async def a(s: S) -> dict:
        s.items.append("x")  # legal: a returns the field
        await asyncio.sleep(0.02)
        return {"items": s.items}

    def b(s: S) -> dict:  # a sync sibling in a worker thread, reading mid-way
        time.sleep(0.01)
        return {"log": [f"b saw {s.items}"]}

    r = _app(tmp_path, a, b, parallel=True).run_sync({}, run_id="r")
    assert r.state.log == ["b saw []"] and r.state.items == ["x"]


def test_a_retry_reads_a_fresh_input(tmp_path):
    seen: list[list[str]] = []

    def a(s: S) -> dict:
        seen.append(list(s.items))
        s.items.append("x")
        if len(seen) < 2:
            raise ConnectionError("transient")
        return {"items": s.items}

    g = GraphBuilder(S).add_node(a, retry=RetryPolicy(initial_delay=0.001))
    g.add_edge(START, "a").add_edge("a", END)
    out = g.compile(store=str(tmp_path / "x.db")).run_sync({})
    assert seen == [[], []] and out.state.items == ["x"]


# -- property: random graphs, random in-place mutations, random delays ------------------

MUTATE = {"on": True}


@st.composite
def specs(draw: Any) -> list[list[dict[str, Any]]]:
    layers = []
    for i in range(draw(st.integers(1, 4))):
        layer = []
        for j in range(draw(st.integers(1, 3))):
            mutate = draw(st.sampled_from([None, None, "items", "bag", "inner"]))
            layer.append(
                {
                    "name": f"n{i}_{j}",
                    "sync": draw(st.booleans()),
                    "delay": draw(st.sampled_from([0, 0, 0.001, 0.004])),
                    "mutate": mutate,
                    # the first node of a layer may write plain fields (no conflict)
                    "writes": j == 0 and mutate is None and draw(st.booleans()),
                }
            )
        layers.append(layer)
    return layers


def _mutate(s: S, what: str | None) -> None:
    if what is None or not MUTATE["on"]:
        return
    if what == "items":
        s.items.append("leak")
    elif what == "bag":
        s.bag["leak"] = 1
    else:
        s.inner.xs.append(-1)


def _seen(name: str, s: S) -> str:
    return f"{name}:{s.items}:{sorted(s.bag.items())}:{s.inner.xs}"


def _node(spec: dict[str, Any]) -> Any:
    name, delay, what, writes = spec["name"], spec["delay"], spec["mutate"], spec["writes"]

    def out(s: S) -> dict:
        upd: dict[str, Any] = {"log": [_seen(name, s)]}
        if writes:
            upd["items"] = [*s.items, name]
            upd["bag"] = {**s.bag, name: len(s.log)}
        return upd

    if spec["sync"]:

        def sync_node(s: S) -> dict:
            _mutate(s, what)
            time.sleep(delay)
            return out(s)

        return sync_node

    async def async_node(s: S) -> dict:
        await asyncio.sleep(delay)
        _mutate(s, what)
        await asyncio.sleep(delay)
        return out(s)

    return async_node


def _build(layers: list[list[dict[str, Any]]]) -> GraphBuilder[S]:
    g = GraphBuilder(S, name="isolation")
    for layer in layers:
        for spec in layer:
            g.add_node(spec["name"], _node(spec))
    for spec in layers[0]:
        g.add_edge(START, spec["name"])
    for a, b in itertools.pairwise(layers):
        for x in a:
            for y in b:
                g.add_edge(x["name"], y["name"])
    for spec in layers[-1]:
        g.add_edge(spec["name"], END)
    return g


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(specs())
def test_property_returned_equals_stored_equals_replayed(layers) -> None:
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=shm) as d:
        inp = {"items": ["i"], "bag": {"b": 0}, "inner": {"xs": [0]}}
        MUTATE["on"] = False
        gold_app = _build(layers).compile(store=str(Path(d) / "gold.db"))
        golden = gold_app.run_sync(inp, run_id="g").state
        MUTATE["on"] = True
        app = _build(layers).compile(store=str(Path(d) / "x.db"))
        mutators = {s["name"]: s["mutate"] for layer in layers for s in layer if s["mutate"]}
        try:
            result = app.run_sync(inp, run_id="r")
            assert not mutators, "a mutating node went unnoticed"
        except NodeFailed as e:
            assert isinstance(e.__cause__, StateMutated), e
            assert e.node in mutators and e.__cause__.fields == [mutators[e.node]]
            # nothing of the mutation was stored: every committed activation saw the
            # same input as in the golden run
            gold_seen = set(golden.log)
            assert set(app.get_state("r").log) <= gold_seen
            MUTATE["on"] = False  # "fix the node" and resume
            result = app.resume_sync("r")
        try:
            assert result.status == "completed"
            assert result.state == golden
            assert app.get_state("r") == result.state
            assert asyncio.run(app.replay("r")).identical  # with the fixed code
        finally:
            MUTATE["on"] = True


def test_the_isolated_input_behaves_like_the_model(tmp_path):
    seen: dict[str, Any] = {}

    def a(s: S) -> dict:
        seen["isinstance"] = isinstance(s, S)
        seen["dump"] = s.model_dump()
        seen["repr"] = repr(s)
        c = s.model_copy(update={"n": 5})
        seen["copy_items"] = c.items
        return {"n": c.n}

    r = _app(tmp_path, a).run_sync({"items": ["q"]})
    assert r.state.n == 5 and seen["isinstance"] and seen["copy_items"] == ["q"]
    assert seen["dump"]["items"] == ["q"] and seen["repr"].startswith("S(")


@pytest.mark.parametrize(
    ("annotation", "flat"),
    [
        (list[str], True),
        (set[int], True),
        (dict[str, float], True),
        (list[str] | None, True),
        (Annotated[list[str], append], True),
        (list[list[str]], False),
        (list[Any], False),
        (dict[str, list[int]], False),
        (list[Inner], False),
    ],
)
def test_only_containers_of_immutable_items_are_copied_shallowly(annotation, flat) -> None:
    """A field whose annotation guarantees immutable items is copied without looking at
    each item (W6 read a 10,000-item list per step); anything that can nest is not."""
    from flowstate.engine._isolation import _flat_annotation

    assert _flat_annotation(annotation) is flat
