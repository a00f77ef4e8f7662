"""Bad updates never corrupt a run (RELIABILITY.md G9, R8)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from flowstate import END, START, GraphBuilder, InputRejected, NodeFailed, UpdateRejected, append


class Inner(BaseModel):
    score: float
    label: str


class S(BaseModel):
    count: int = 0
    name: str = ""
    items: Annotated[list[int], append] = []
    inner: Inner | None = None
    ratio: float = Field(default=0.5, ge=0, le=1)


def _not_an_int(text: str) -> bool:
    """Whether pydantic's lax mode refuses ``text`` as an int ('+0', ' 1_0 ' are ints)."""
    try:
        TypeAdapter(int).validate_python(text)
    except ValidationError:
        return True
    return False


BAD_VALUES: dict[str, Any] = {
    "count": st.one_of(
        st.text(min_size=1).filter(_not_an_int),
        st.lists(st.integers(), min_size=1),
        st.dictionaries(st.text(), st.integers(), min_size=1),
    ),
    "name": st.one_of(
        st.lists(st.text(), min_size=1), st.dictionaries(st.text(), st.text(), min_size=1)
    ),
    "items": st.one_of(st.lists(st.text(min_size=1).filter(_not_an_int), min_size=1)),
    "inner": st.one_of(
        st.dictionaries(st.sampled_from(["score", "label"]), st.lists(st.integers()), min_size=1),
        st.text(min_size=1),
    ),
    "ratio": st.one_of(
        st.floats(min_value=1.01, max_value=1e9), st.floats(max_value=-0.01, min_value=-1e9)
    ),
    "unknown_field": st.integers(),
}


def _head_hash(db: str, run_id: str) -> str:
    with sqlite3.connect(db) as c:
        rows = []
        for t in ("writes", "steps", "effects"):
            rows += c.execute(
                f"SELECT * FROM {t} WHERE run_id = ? ORDER BY 1, 2, 3", [run_id]
            ).fetchall()
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), field=st.sampled_from(sorted(BAD_VALUES)))
def test_bad_update_is_rejected_and_leaves_committed_state_untouched(data, field, fast_tmp):
    bad = data.draw(BAD_VALUES[field])
    fix = {"value": None}

    def first(s: S) -> dict:
        return {"count": 1, "items": [1]}

    def second(s: S) -> dict:
        if fix["value"] is not None:
            return fix["value"]
        return {field: bad}

    g = GraphBuilder(S, name="upd").add_node(first).add_node(second)
    g.add_edge(START, "first").add_edge("first", "second").add_edge("second", END)
    db = str(fast_tmp / "u.db")
    app = g.compile(store=db)
    import uuid

    run_id = uuid.uuid4().hex
    try:
        app.run_sync({}, run_id=run_id)
        raise AssertionError(f"{field}={bad!r} was accepted")
    except NodeFailed as e:
        assert isinstance(e.__cause__, UpdateRejected)
        assert e.node == "second"
        assert f"'{field}'" in str(e)
    before = _head_hash(db, run_id)
    assert app.get_state(run_id) == S(count=1, items=[1])
    # nothing further committed, and the rows are byte-identical
    assert _head_hash(db, run_id) == before
    fix["value"] = {"count": 2, "name": "ok"}
    r = app.resume_sync(run_id)
    assert r.status == "completed"
    assert r.state == S(count=2, name="ok", items=[1])


def test_duplicate_run_id_is_a_clear_error(tmp_path):
    import pytest

    from flowstate import RunStateError

    def one(s: S) -> dict:
        return {"count": 1}

    app = (
        GraphBuilder(S)
        .add_node(one)
        .add_edge(START, "one")
        .add_edge("one", END)
        .compile(store=str(tmp_path / "x.db"))
    )
    app.run_sync({}, run_id="same")
    with pytest.raises(RunStateError, match="a run with id 'same' already exists"):
        app.run_sync({}, run_id="same")


def test_nested_field_path_is_named(tmp_path):
    def bad(s: S) -> dict:
        return {"inner": {"score": "high", "label": "x"}}

    g = GraphBuilder(S).add_node(bad).add_edge(START, "bad").add_edge("bad", END)
    try:
        g.compile(store=str(tmp_path / "x.db")).run_sync({})
    except NodeFailed as e:
        assert ("field 'inner'" in str(e) and "at Inner.score" in str(e)) or "score" in str(e)
    else:
        raise AssertionError("accepted")


def test_reducer_accepts_single_item_and_validates_it(tmp_path):
    def one(s: S) -> dict:
        return {"items": 5}

    def bad(s: S) -> dict:
        return {"items": "five"}

    g = GraphBuilder(S).add_node(one).add_node(bad)
    g.add_edge(START, "one").add_edge("one", "bad").add_edge("bad", END)
    app = g.compile(store=str(tmp_path / "x.db"))
    try:
        app.run_sync({}, run_id="r")
    except NodeFailed as e:
        assert "'items'" in str(e)
    assert app.get_state("r").items == [5]


def test_custom_reducer_update_type_from_its_annotation(tmp_path):
    def keep_max(old: int, new: int) -> int:
        return max(old, new)

    class M(BaseModel):
        best: Annotated[int, keep_max] = 0

    def a(s: M) -> dict:
        return {"best": 7}

    def b(s: M) -> dict:
        return {"best": 3}

    g = GraphBuilder(M).add_node(a).add_node(b)
    g.add_edge(START, "a").add_edge("a", "b").add_edge("b", END)
    app = g.compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({})
    assert r.state.best == 7
    assert app.get_state(r.run_id).best == 7  # rebuilt from stored updates


def test_an_input_json_cannot_hold_is_rejected_before_any_row(tmp_path):
    """A lone surrogate fits ``str`` but no UTF-8 JSON: InputRejected (a 422 in the
    service), not a serialisation error from deep in the store; no run is created."""

    class T(BaseModel):
        text: str = ""

    def n(s: T) -> dict:
        return {}

    g = GraphBuilder(T, name="surrogate").add_node(n)
    g.add_edge(START, "n").add_edge("n", END)
    app = g.compile(store=str(tmp_path / "s.db"))
    with pytest.raises(InputRejected, match="lone surrogates"):
        app.run_sync({"text": "a\udaf4"}, run_id="bad")
    assert app.store.find_run("bad") is None
