"""The run events kept in the store: the fast path (no listener) writes what the event
models would, and ``compile(events=False)`` keeps none."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, Send, append
from flowstate.checkpoints import InMemoryStore, SQLiteStore
from flowstate.events import EventAdapter


class S(BaseModel):
    items: Annotated[list[str], append] = []
    note: str = ""


def graph() -> GraphBuilder[S]:
    g = GraphBuilder(S, name="events_log")

    async def a(s: S) -> dict[str, Any]:
        return {"note": 'héllo "quoted" \u2028', "items": ["a"]}

    def fan(s: S) -> list[Send]:
        return [Send("b", i) for i in range(3)]

    async def b(i: int) -> dict[str, Any]:
        return {"items": [f"b{i}"]}

    g.add_node(a)
    g.add_node(b)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", fan, targets=["b"])
    g.add_edge("b", END)
    return g


def stored(store: Any, run_id: str) -> list[dict[str, Any]]:
    rows = store.events_since(run_id)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    out = []
    for _seq, kind, data, at in rows:
        e = EventAdapter.validate_json(data)  # each row is a typed engine event
        assert e.kind == kind and e.at == at
        # the row is exactly the model's JSON: same fields, same order
        assert data == e.model_dump_json(), (data, e.model_dump_json())
        out.append(json.loads(data))
    return out


def normalised(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in ("at", "duration_ms")} for e in events]


def test_fast_path_rows_equal_the_models_rows(tmp_path: Path) -> None:
    fast = SQLiteStore(tmp_path / "fast.db")
    slow = SQLiteStore(tmp_path / "slow.db")
    seen: list[Any] = []
    r1 = asyncio.run(graph().compile(store=fast).run({}, run_id="r"))
    # an on_event listener makes the engine build every event as its model
    r2 = asyncio.run(graph().compile(store=slow).run({}, run_id="r", on_event=seen.append))
    assert r1.state == r2.state
    a, b = stored(fast, "r"), stored(slow, "r")
    assert normalised(a) == normalised(b)
    kinds = [e["kind"] for e in a]
    assert kinds.count("node_started") == 4 and kinds.count("node_finished") == 4
    assert kinds.count("step_finished") == 2 and kinds[-1] == "run_finished"
    first = next(e for e in a if e["kind"] == "node_finished")
    assert first["update"] == {"note": 'héllo "quoted" \u2028', "items": ["a"]}
    assert normalised([e.model_dump(mode="json") for e in seen]) == normalised(b)


def test_events_false_keeps_no_events(tmp_path: Path) -> None:
    for store in (SQLiteStore(tmp_path / "off.db"), InMemoryStore()):
        app = graph().compile(store=store, events=False)
        r = asyncio.run(app.run({}, run_id="r"))
        assert r.status == "completed" and r.state.items == ["a", "b0", "b1", "b2"]
        assert store.events_since("r") == []
        # listeners still get every event
        seen: list[Any] = []
        asyncio.run(app.run({}, run_id="r2", on_event=seen.append))
        assert [e.kind for e in seen].count("node_finished") == 4
        assert store.events_since("r2") == []
        # a graph bound to another store keeps the setting
        assert app.bind(InMemoryStore()).events is False
