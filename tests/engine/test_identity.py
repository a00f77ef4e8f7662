"""Graph identity: resuming with a changed graph is refused with a readable diff."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, GraphMismatch, NodeFailed


class S(BaseModel):
    n: int = 0


def ok(s: S) -> dict:
    return {"n": s.n + 1}


def boom(s: S) -> dict:
    raise RuntimeError("boom")


def test_resume_with_changed_graph_is_refused_with_diff(tmp_path):
    db = str(tmp_path / "x.db")
    g1 = GraphBuilder(S, name="g").add_node(ok).add_node("b", boom)
    g1.add_edge(START, "ok").add_edge("ok", "b").add_edge("b", END)
    with pytest.raises(NodeFailed):
        g1.compile(store=db).run_sync({}, run_id="r")

    g2 = GraphBuilder(S, name="g").add_node(ok).add_node("b", ok).add_node("extra", ok)
    g2.add_edge(START, "ok").add_edge("ok", "b").add_edge("b", "extra").add_edge("extra", END)
    app2 = g2.compile(store=db)
    with pytest.raises(GraphMismatch) as e:
        app2.resume_sync("r")
    text = str(e.value)
    assert "+ node 'extra' added" in text
    assert "allow_graph_change=True" in text
    r = app2.resume_sync("r", allow_graph_change=True)
    assert r.status == "completed" and r.state.n == 3


def test_same_graph_code_change_resumes_without_override(tmp_path):
    db = str(tmp_path / "x.db")
    g1 = GraphBuilder(S, name="g").add_node(ok).add_node("b", boom)
    g1.add_edge(START, "ok").add_edge("ok", "b").add_edge("b", END)
    with pytest.raises(NodeFailed) as e:
        g1.compile(store=db).run_sync({}, run_id="r")
    assert "flowstate resume r" in str(e.value)
    g2 = GraphBuilder(S, name="g").add_node(ok).add_node("b", ok)  # fixed node body
    g2.add_edge(START, "ok").add_edge("ok", "b").add_edge("b", END)
    r = g2.compile(store=db).resume_sync("r")
    assert r.state.n == 2


def test_state_schema_change_is_in_the_diff(tmp_path):
    db = str(tmp_path / "x.db")

    class S2(BaseModel):
        n: int = 0
        extra: str = ""

    def ok2(s: S2) -> dict:
        return {"n": 1}

    g1 = GraphBuilder(S, name="g").add_node("a", ok).add_edge(START, "a").add_edge("a", END)
    r = g1.compile(store=db).run_sync({}, run_id="r")
    assert r.status == "completed"
    g2 = GraphBuilder(S2, name="g").add_node("a", ok2).add_edge(START, "a").add_edge("a", END)
    with pytest.raises(GraphMismatch, match="state field 'extra' added"):
        g2.compile(store=db).resume_sync("r")
