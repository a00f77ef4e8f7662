"""Item 7 of issue 15: Send targets are recognised without the router's annotation, and
the remaining problems say Send."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, GraphBuildError, Send, append
from flowstate.engine import RouteError


class MR(BaseModel):
    items: list[int] = []
    results: Annotated[list[int], append] = []
    last: int = 0


class Item(BaseModel):
    x: int


class Last(BaseModel):
    last: int


def split(s: MR) -> None:
    return None


def square(i: Item) -> dict:
    return {"results": [i.x * i.x]}


def test_unannotated_router_with_targets_fans_out(tmp_path):
    def fan(s):  # no annotation at all
        return [Send("square", Item(x=v)) for v in s.items]

    g = GraphBuilder(MR).add_node(split).add_node(square)
    g.add_edge(START, "split").add_conditional_edges("split", fan, ["square"])
    g.add_edge("square", END)
    r = g.compile(store=str(tmp_path / "x.db")).run_sync({"items": [1, 2, 3]})
    assert r.state.results == [1, 4, 9]


def test_a_send_target_fed_by_an_edge_is_reported_as_such():
    g = GraphBuilder(MR).add_node(split).add_node(square)
    g.add_edge(START, "split").add_edge("split", "square").add_edge("square", END)
    with pytest.raises(GraphBuildError) as e:
        g.compile(store=":memory:")
    msg = str(e.value)
    assert "reads 'x' through view Item" in msg
    assert "router returning Send('square', Item(...)), not by an edge or join" in msg


def test_unannotated_send_fan_out_writing_a_plain_field_is_a_conflict():
    def last(i: Item) -> Last:
        return Last(last=i.x)

    def fan(s):
        return [Send("last", Item(x=v)) for v in s.items]

    g = GraphBuilder(MR).add_node(split).add_node(last)
    g.add_edge(START, "split").add_conditional_edges("split", fan, ["last"])
    g.add_edge("last", END)
    with pytest.raises(GraphBuildError, match=r"fan-out of Send.*'last'.*no reducer"):
        g.compile(store=":memory:")


def test_a_plain_route_to_a_send_target_says_send(tmp_path):
    def route(s):
        return "square"

    g = GraphBuilder(MR).add_node(split).add_node(square)
    g.add_edge(START, "split").add_conditional_edges("split", route, ["square"])
    g.add_edge("square", END)
    # the router is blamed (RouteError, FS209), not the node before it
    with pytest.raises(RouteError, match=r"return Send\('square', Item\(...\)\)"):
        g.compile(store=str(tmp_path / "x.db")).run_sync({"items": [1]})
