"""Property: over any sequence of turns, the state after turn N is the reducers applied to
the inputs in order (with each turn's own writes), and every turn replays identically
without a live effect."""

from __future__ import annotations

import asyncio
import itertools
from typing import Annotated, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, add, append
from flowstate.checkpoints import InMemoryStore


class Talk(BaseModel):
    messages: Annotated[list[str], append] = []
    total: Annotated[int, add] = 0
    note: str = ""


_live = itertools.count()
"""Every live call of the effect takes the next number: a replay that called it live
would write different replies."""


def _app() -> Any:
    async def answer(s: Talk, ctx: NodeContext) -> dict[str, Any]:
        n = await ctx.effect("model", lambda: next(_live))
        return {"messages": [f"reply {n} to {len(s.messages)}"], "total": 1}

    b = GraphBuilder(Talk, name="talk")
    b.add_node("answer", answer)
    b.add_edge(START, "answer")
    b.add_edge("answer", END)
    return b.compile(store=InMemoryStore())


turn_input = st.fixed_dictionaries(
    {},
    optional={
        "messages": st.lists(st.text(max_size=5), max_size=2),
        "total": st.integers(-5, 5),
        "note": st.text(max_size=5),
    },
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(turn_input, min_size=1, max_size=5))
def test_state_after_each_turn_is_the_inputs_through_the_reducers(turns: list[dict]) -> None:
    app = _app()

    async def go() -> None:
        expected = {"messages": [], "total": 0, "note": ""}
        ids = []
        for inp in turns:
            # the model of the reducers: append, add, replace
            expected["messages"] = [*expected["messages"], *inp.get("messages", [])]
            expected["total"] += inp.get("total", 0)
            expected["note"] = inp.get("note", expected["note"])
            r = await app.run(inp, thread_id="p")
            reply = r.state.messages[-1]
            assert reply.endswith(f" to {len(expected['messages'])}")
            expected["messages"].append(reply)
            expected["total"] += 1
            assert r.state.model_dump() == expected
            ids.append(r.run_id)
        assert [t.run_id for t in app.thread("p").turns] == ids
        before = next(_live)
        for rid in ids:
            report = await app.replay(rid)
            assert report.identical and report.replay_status == "completed"
        assert next(_live) == before + 1  # no live call during the replays

    asyncio.run(go())
