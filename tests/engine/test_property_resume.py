"""Property: for random valid graphs and a random crash point, crash + resume gives the
same final state and the same committed updates as an uninterrupted run, and no committed
activation runs twice (issue 2, item 6; STYLE.md 13)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, add, append, merge
from tests.conftest import CrashingStore, SimulatedCrash


class PS(BaseModel):
    log: Annotated[list[str], append] = []
    total: Annotated[int, add] = 0
    visits: Annotated[dict[str, int], merge] = {}


@st.composite
def graph_specs(draw: Any) -> dict[str, Any]:
    """Layers of nodes; edges to random non-empty subsets of the next layer; some nodes
    wait on a join of all their predecessors; optional bounded back-edge loops."""
    n_layers = draw(st.integers(1, 4))
    layers = [[f"L{i}_{j}" for j in range(draw(st.integers(1, 3)))] for i in range(n_layers)]
    edges: list[tuple[str, str]] = [(START, n) for n in layers[0]]
    joins: list[tuple[list[str], str]] = []
    for i in range(n_layers - 1):
        incoming: dict[str, list[str]] = {n: [] for n in layers[i + 1]}
        for src in layers[i]:
            targets = draw(st.lists(st.sampled_from(layers[i + 1]), min_size=1, unique=True))
            for t in targets:
                incoming[t].append(src)
        for t in layers[i + 1]:
            if not incoming[t]:
                incoming[t].append(layers[i][0])
            if len(incoming[t]) > 1 and draw(st.booleans()):
                joins.append((incoming[t], t))
            else:
                edges += [(s, t) for s in incoming[t]]
    for n in layers[-1]:
        edges.append((n, END))
    loops: list[tuple[str, str, int]] = []
    if n_layers > 1 and draw(st.booleans()):
        src = draw(st.sampled_from(layers[-1]))
        dst = draw(st.sampled_from([n for layer in layers[:-1] for n in layer]))
        loops.append((src, dst, draw(st.integers(1, 3))))
    return {"layers": layers, "edges": edges, "joins": joins, "loops": loops}


def build(spec: dict[str, Any], calls: Counter) -> GraphBuilder[PS]:
    g = GraphBuilder(PS, name="random")
    loop_src = {s: (d, k) for s, d, k in spec["loops"]}

    def make(name: str):
        def node(s: PS) -> dict:
            calls[(name, len(s.log), s.total)] += 1
            return {
                "log": [f"{name}@{len(s.log)}"],
                "total": len(name) + len(s.log),
                "visits": {name: s.visits.get(name, 0) + 1},
            }

        node.__name__ = name
        return node

    for layer in spec["layers"]:
        for n in layer:
            g.add_node(make(n))
    for s, d in spec["edges"]:
        if s in loop_src and d == END:
            continue
        g.add_edge(s, d)
    for sources, t in spec["joins"]:
        g.add_edge(sources, t)
    for s, (d, k) in loop_src.items():

        def router(st_: PS, s: str = s, d: str = d, k: int = k) -> str:
            return d if st_.visits.get(s, 0) < k else END

        g.add_conditional_edges(s, router, [d, END])
    return g


def committed(db: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as c:
        return c.execute(
            'SELECT step, task_path, "update" FROM writes ORDER BY step, seq'
        ).fetchall()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=graph_specs(), crash_at=st.integers(1, 25), crash_again=st.integers(0, 25))
def test_crash_and_resume_equals_uninterrupted(fast_tmp, spec, crash_at, crash_again):
    import uuid

    tag = uuid.uuid4().hex[:8]
    golden_calls: Counter = Counter()
    gold_db = fast_tmp / f"gold-{tag}.db"
    gold = build(spec, golden_calls).compile(store=str(gold_db)).run_sync({}, run_id="r")
    assert gold.status == "completed"

    calls: Counter = Counter()
    db = fast_tmp / f"crash-{tag}.db"
    crashes = 0
    store = CrashingStore(db, crash_after=crash_at)
    try:
        build(spec, calls).compile(store=store).run_sync({}, run_id="r")
    except SimulatedCrash:
        crashes += 1
    store.conn.close()
    result = None
    for limit in (crash_again or None, None):
        store = CrashingStore(db, crash_after=limit)
        app = build(spec, calls).compile(store=store)
        try:
            result = app.resume_sync("r")
            break
        except SimulatedCrash:
            crashes += 1
            store.conn.close()
    assert result is not None and result.status == "completed"
    assert result.state == gold.state
    assert committed(db) == committed(gold_db)
    # The crashing store dies right after a commit, so every activation that ran had
    # committed: none may run again on resume. Each distinct (node, input) ran exactly as
    # often as in the uninterrupted run.
    assert calls == golden_calls
