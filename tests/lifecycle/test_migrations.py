"""State-schema migrations (issue 10 item 4)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, GraphBuildError, GraphMismatch


class V1(BaseModel):
    name: str = ""
    count: int = 0


class V2(BaseModel):
    title: str = ""  # renamed from name
    count: int = 0
    tags: list[str] = []  # added


def v1_graph() -> GraphBuilder[V1]:
    def a(s: V1) -> dict:
        return {"name": s.name + "!", "count": s.count + 1}

    def b(s: V1) -> dict:
        return {"count": s.count + 10}

    g = GraphBuilder(V1, name="doc")
    g.add_node(a).add_node(b).add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
    return g


def rename(doc: dict, kind: str) -> dict:
    out = {("title" if k == "name" else k): v for k, v in doc.items()}
    if kind == "state":
        out.setdefault("tags", [])
    return out


def v2_graph(with_migration: bool = True) -> GraphBuilder[V2]:
    def a(s: V2) -> dict:
        return {"title": s.title + "!", "count": s.count + 1}

    def b(s: V2) -> dict:
        return {"count": s.count + 10, "tags": ["v2"]}

    g = GraphBuilder(V2, name="doc", version=2)
    g.add_node(a).add_node(b).add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
    if with_migration:
        g.add_migration(1, rename)
    return g


def test_history_and_state_at_of_old_runs_are_migrated(tmp_path):
    db = str(tmp_path / "x.db")
    v1_graph().compile(store=db).run_sync({"name": "doc"}, run_id="old")
    app2 = v2_graph().compile(store=db)
    assert app2.state_at("old", 0) == V2(title="doc", count=0)
    assert app2.state_at("old", 1) == V2(title="doc!", count=1)
    assert app2.get_state("old") == V2(title="doc!", count=11)


def test_changed_schema_without_migration_is_refused_with_a_diff(tmp_path):
    db = str(tmp_path / "x.db")
    v1_graph().compile(store=db).run_sync({"name": "doc"}, run_id="old")
    with pytest.raises(GraphMismatch) as e:
        v2_graph(with_migration=False).compile(store=db).get_run("old") and v2_graph(
            with_migration=False
        ).compile(store=db).resume_sync("old")
    text = str(e.value)
    assert "- state field 'name' removed" in text
    assert "+ state field 'title' added" in text and "+ state field 'tags' added" in text
    assert "no migration registered from state version(s) [1]" in text


def test_schema_change_without_version_bump_says_so(tmp_path):
    db = str(tmp_path / "x.db")
    v1_graph().compile(store=db).run_sync({"name": "doc"}, run_id="old")

    class V1b(BaseModel):
        name: str = ""
        count: float = 0.0  # retyped

    def a(s: V1b) -> dict:
        return {}

    g = GraphBuilder(V1b, name="doc").add_node(a).add_node("b", a)
    g.add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
    with pytest.raises(GraphMismatch) as e:
        g.compile(store=db).resume_sync("old")
    assert "~ state field 'count' retyped" in str(e.value)
    assert "bump GraphBuilder(..., version=2)" in str(e.value)


def test_migration_versions_are_checked_at_build():
    g = v2_graph()
    g.add_migration(5, rename)
    with pytest.raises(GraphBuildError, match="migration from state version 5"):
        g.compile(store=":memory:")


def test_resume_migrates_the_stored_run_then_continues_in_the_new_version(tmp_path):
    db = str(tmp_path / "x.db")

    def boom(s: V1) -> dict:
        raise RuntimeError("b is broken in v1")

    g1 = GraphBuilder(V1, name="doc")
    g1.add_node("a", lambda s: {"name": s.name + "!", "count": s.count + 1}).add_node("b", boom)
    g1.add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
    import pytest as _pytest

    from flowstate import NodeFailed

    with _pytest.raises(NodeFailed):
        g1.compile(store=db).run_sync({"name": "doc"}, run_id="old")
    app2 = v2_graph().compile(store=db)
    r = app2.resume_sync("old")
    assert r.status == "completed"
    assert r.state == V2(title="doc!", count=11, tags=["v2"])
    # every stored row is now version 2: a fresh handle rebuilds without migrating again
    fresh = v2_graph().compile(store=db)
    assert fresh.get_state("old") == r.state
    assert fresh.state_at("old", 1) == V2(title="doc!", count=1)
    assert fresh.get_run("old").fingerprint == fresh.fingerprint
