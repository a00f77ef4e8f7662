"""Property: any sequence of update_state edits ends in the state the reducers give,
resumes from it, and replays identically offline."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, Overwrite, add, append, merge


class P(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []
    total: Annotated[int, add] = 0
    tags: Annotated[dict[str, int], merge] = {}


def first(s: P) -> dict[str, Any]:
    return {"log": ["first"], "total": 1}


def second(s: P) -> dict[str, Any]:
    return {"log": [f"second:{s.n}:{s.total}"], "tags": {"second": len(s.log)}}


def _graph() -> GraphBuilder[P]:
    g = GraphBuilder(P).add_node(first).add_node(second)
    g.add_edge(START, "first").add_edge("first", "second").add_edge("second", END)
    return g


words = st.text(alphabet="abcxyz", min_size=0, max_size=3)
edit = st.fixed_dictionaries(
    {},
    optional={
        "n": st.integers(-5, 5),
        "log": st.lists(words, max_size=3),
        "total": st.integers(-3, 3),
        "tags": st.dictionaries(words, st.integers(0, 9), max_size=2),
        "trim": st.lists(words, max_size=2),
    },
)


def _expected(state: P, e: dict[str, Any]) -> P:
    d = state.model_dump()
    if "n" in e:
        d["n"] = e["n"]
    if "trim" in e:
        d["log"] = list(e["trim"])
    elif "log" in e:
        d["log"] = d["log"] + e["log"]
    if "total" in e:
        d["total"] += e["total"]
    if "tags" in e:
        d["tags"] = {**d["tags"], **e["tags"]}
    return P(**d)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.lists(edit, min_size=1, max_size=4), who=st.sampled_from([None, "ann"]))
def test_edits_fold_through_the_reducers_and_replay_identically(
    edits: list[dict[str, Any]], who: str | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = _graph().compile(store=str(Path(tmp) / "p.db"), interrupt_before=("second",))
        app.run_sync({"n": 1}, run_id="r")
        expected = app.get_state("r")
        for e in edits:
            values: dict[str, Any] = {k: v for k, v in e.items() if k != "trim"}
            if "trim" in e:
                values["log"] = Overwrite(e["trim"])
            app.update_state("r", values, by=who)
            expected = _expected(expected, e)
            assert app.get_state("r") == expected
        entries = [h for h in app.history("r") if h.edit]
        assert len(entries) == len(edits) and all(h.by == who for h in entries)
        done = app.resume_sync("r")
        last = {
            "log": [f"second:{expected.n}:{expected.total}"],
            "tags": {"second": len(expected.log)},
        }
        assert done.state == _expected(expected, last)
        report = asyncio.run(app.replay("r"))
        assert report.identical and report.activations == 2 + len(edits)
        app.store.close()
