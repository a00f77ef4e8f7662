"""Items 3 and 4 of issue 15: subgraphs are part of their parent's run (limits, usage,
breakpoints, interrupts), and reducers pass up only what the child added."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, add


class Acc(BaseModel):
    items: Annotated[list[str], add] = []
    text: Annotated[str, add] = ""
    count: Annotated[int, add] = 0
    pair: Annotated[tuple[int, ...], add] = ()


def test_add_on_lists_and_strings_passes_up_only_the_childs_part(tmp_path):
    def grow(s: Acc) -> dict:
        return {"items": ["y"], "text": "b", "count": 2, "pair": (2,)}

    child = GraphBuilder(Acc, name="child").add_node(grow)
    child.add_edge(START, "grow").add_edge("grow", END)

    def seed(s: Acc) -> dict:
        return {"items": ["x"], "text": "a", "count": 1, "pair": (1,)}

    g = GraphBuilder(Acc, name="parent").add_node(seed).add_node("sub", child.compile(store=None))
    g.add_edge(START, "seed").add_edge("seed", "sub").add_edge("sub", END)
    r = g.compile(store=str(tmp_path / "x.db")).run_sync({})
    assert r.state.items == ["x", "y"]  # not ['x', 'x', 'y']
    assert r.state.text == "ab"
    assert r.state.count == 3
    assert r.state.pair == (1, 2)
