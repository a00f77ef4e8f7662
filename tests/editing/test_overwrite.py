"""Overwrite(value): one write replaces a reducer field; checked at build time, validated
at run time, stored as JSON and replayed identically."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Annotated, Any, TypedDict

import pytest
from pydantic import BaseModel

from flowstate import (
    END,
    START,
    GraphBuilder,
    GraphBuildError,
    Overwrite,
    UpdateRejected,
    WriteConflict,
    add,
    append,
)


class Chat(BaseModel):
    messages: Annotated[list[str], append] = []
    total: Annotated[int, add] = 0


class Trimmed(TypedDict):
    messages: Overwrite[list[str]]


class Counted(BaseModel):
    total: Overwrite[int]


def talk(s: Chat) -> dict[str, Any]:
    return {"messages": [f"m{len(s.messages)}", f"m{len(s.messages) + 1}"], "total": 5}


def trim(s: Chat) -> Trimmed:
    return {"messages": Overwrite(s.messages[-1:])}


def reset(s: Chat) -> Counted:
    return Counted(total=Overwrite(1))


def after(s: Chat) -> dict[str, Any]:
    return {"messages": ["after"], "total": 2}


def chat_graph() -> GraphBuilder[Chat]:
    g = GraphBuilder(Chat).add_node(talk).add_node(trim).add_node(reset).add_node(after)
    g.add_edge(START, "talk").add_edge("talk", "trim").add_edge("trim", "reset")
    g.add_edge("reset", "after").add_edge("after", END)
    return g


def test_overwrite_replaces_a_reducer_field_and_round_trips_as_json(db_path):
    app = chat_graph().compile(store=str(db_path))
    r = app.run_sync({"messages": ["hello"], "total": 10}, run_id="r1")
    # talk appended two, trim kept the last one, after appended again; reset set total to
    # 1 and after added 2
    assert r.state == Chat(messages=["m2", "after"], total=3)
    db = sqlite3.connect(db_path)
    stored = dict(db.execute("SELECT node, \"update\" FROM writes WHERE run_id = 'r1'").fetchall())
    assert json.loads(stored["trim"]) == {"messages": {"__overwrite__": ["m2"]}}
    assert json.loads(stored["reset"]) == {"total": {"__overwrite__": 1}}
    # rebuilt from the stored rows (not the live values), and replayed offline
    assert app.state_at("r1", 2) == Chat(messages=["m2"], total=15)
    assert app.get_state("r1") == r.state
    assert asyncio.run(app.replay("r1")).identical
    hist = {h.node: h.update for h in app.history("r1")}
    assert hist["trim"] == {"messages": {"__overwrite__": ["m2"]}}


class Bad(TypedDict):
    messages: Overwrite[int]


def bad(s: Chat) -> Bad:
    return {"messages": Overwrite(1)}


def test_overwrite_of_the_wrong_type_is_a_build_error():
    g = GraphBuilder(Chat).add_node(bad)
    g.add_edge(START, "bad").add_edge("bad", END)
    with pytest.raises(GraphBuildError, match=r"overwrites 'messages' with Overwrite\[int\]"):
        g.compile(store=None)


def test_overwrite_value_is_validated_at_run_time(db_path):
    def sneaky(s: Chat) -> dict[str, Any]:
        return {"messages": Overwrite(["ok", 3])}

    g = GraphBuilder(Chat).add_node(sneaky)
    g.add_edge(START, "sneaky").add_edge("sneaky", END)
    app = g.compile(store=str(db_path))
    with pytest.raises(Exception) as e:
        app.run_sync({}, run_id="r1")
    cause = e.value.__cause__
    assert isinstance(cause, UpdateRejected) and "Overwrite(...)" in cause.message
    assert app.get_state("r1") == Chat()  # nothing committed


def test_two_overwrites_of_one_field_in_a_step_conflict(db_path):
    def one(s: Chat) -> dict[str, Any]:
        return {"total": Overwrite(1)}

    def two(s: Chat) -> dict[str, Any]:
        return {"total": Overwrite(2)}

    g = GraphBuilder(Chat).add_node(one).add_node(two)
    g.add_edge(START, "one").add_edge(START, "two").add_edge(["one", "two"], END)
    with pytest.raises(Exception) as e:
        g.compile(store=str(db_path)).run_sync({}, run_id="r1")
    assert isinstance(e.value.__cause__, WriteConflict) or "FS203" in str(e.value)


def test_update_state_takes_an_overwrite_and_its_json_form(db_path):
    app = chat_graph().compile(store=str(db_path), interrupt_before=("after",))
    app.run_sync({"messages": ["x"]}, run_id="r1")
    app.update_state("r1", {"messages": Overwrite(["kept"])})
    assert app.get_state("r1").messages == ["kept"]
    app.update_state("r1", {"messages": {"__overwrite__": []}, "total": 1})
    assert app.get_state("r1").messages == []
    done = app.resume_sync("r1")
    assert done.state.messages == ["after"]
    assert asyncio.run(app.replay("r1")).identical
