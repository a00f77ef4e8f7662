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


# -- item 3: a child run is part of its parent's run ------------------------------------

import asyncio  # noqa: E402

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from flowstate import Limits, NodeContext, NodeFailed, PayloadTooLarge, append  # noqa: E402
from flowstate.cli import app as cli  # noqa: E402
from flowstate.nodes import run_usage  # noqa: E402


class Work(BaseModel):
    turns: int = 0
    log: Annotated[list[str], append] = []
    blob: str = ""


def _thinker(tokens: int = 100, turns: int = 6) -> GraphBuilder[Work]:
    """A child graph that loops ``turns`` times, each turn "spending" ``tokens``."""

    def think(s: Work, ctx: NodeContext) -> dict:
        ctx.add_usage(tokens // 2, tokens - tokens // 2)
        return {"turns": s.turns + 1, "log": [f"t{s.turns}"]}

    def more(s: Work) -> str:
        return "think" if s.turns < turns else END

    g = GraphBuilder(Work, name="thinker").add_node(think)
    g.add_edge(START, "think").add_conditional_edges("think", more, ["think", END])
    return g


def _parent(child: GraphBuilder[Work], **compile_kw) -> GraphBuilder[Work]:
    g = GraphBuilder(Work, name="parent").add_node("sub", child.compile(store=None, **compile_kw))
    g.add_edge(START, "sub").add_edge("sub", END)
    return g


def test_a_token_budget_counts_the_whole_run_tree(tmp_path):
    app = _parent(_thinker()).compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({}, run_id="r", limits=Limits(token_budget=250))
    assert r.status == "paused" and "token budget" in (r.reason or "")
    used = run_usage(app.store, "r/0/sub")
    assert used["input_tokens"] + used["output_tokens"] == 300  # stopped at the next step
    r = app.resume_sync("r", limits=Limits(token_budget=10_000))
    assert r.status == "completed" and r.state.turns == 6
    # run_usage of the top-level run counts its subgraph's tokens
    assert run_usage(app.store, "r") == {"input_tokens": 300, "output_tokens": 300}


def test_usage_is_reported_with_descendants_in_events_show_and_every_depth(tmp_path):
    mid = _parent(_thinker(turns=2))
    app = _parent(mid).compile(store=str(tmp_path / "x.db"))
    events: list = []
    r = asyncio.run(app.run({}, run_id="r", on_event=events.append))
    assert r.status == "completed"
    assert run_usage(app.store, "r") == {"input_tokens": 100, "output_tokens": 100}
    top = [e for e in events if e.kind == "run_finished" and e.run_id == "r"]
    assert top[-1].usage == {"input_tokens": 100, "output_tokens": 100}
    sub_done = [e for e in events if e.kind == "node_finished" and e.run_id == "r"]
    assert sub_done[-1].usage == {"input_tokens": 100, "output_tokens": 100}
    out = CliRunner().invoke(cli, ["show", "r", "--db", str(tmp_path / "x.db")])
    assert out.exit_code == 0, out.output
    assert "tokens: 200" in out.output
    activations = out.output.split("usage (run tree)")[0]
    assert activations.count("think") == 2  # depth 2: both turns of the grandchild shown


def test_byte_limits_of_the_run_apply_inside_subgraphs(tmp_path):
    def big(s: Work) -> dict:
        return {"blob": "x" * 5000}

    child = GraphBuilder(Work, name="big").add_node(big)
    child.add_edge(START, "big").add_edge("big", END)
    app = _parent(child).compile(store=str(tmp_path / "x.db"))
    with pytest.raises(NodeFailed) as e:
        app.run_sync({}, run_id="r", limits=Limits(max_update_bytes=1000))
    assert isinstance(e.value.__cause__, PayloadTooLarge) or "max_update_bytes" in str(e.value)


def test_breakpoints_compiled_into_a_subgraph_are_honoured(tmp_path):
    app = _parent(_thinker(turns=2), interrupt_before=("think",)).compile(
        store=str(tmp_path / "x.db")
    )
    r = app.run_sync({}, run_id="r")
    assert r.status == "paused" and "breakpoint before 'think'" in (r.reason or "")
    assert r.state.turns == 0
    seen = 0
    while r.status == "paused":
        seen += 1
        r = app.resume_sync("r")
    assert r.state.turns == 2 and seen == 2  # it stopped before each of the two turns
    # replay passes breakpoints
    assert asyncio.run(app.replay("r")).identical


def test_an_interrupt_two_levels_down_is_listed_and_answered_at_the_top(tmp_path):
    async def ask(s: Work, ctx: NodeContext) -> dict:
        return {"log": [f"answer={await ctx.interrupt({'q': 'go?'})}"]}

    leaf = GraphBuilder(Work, name="leaf").add_node(ask)
    leaf.add_edge(START, "ask").add_edge("ask", END)
    app = _parent(_parent(leaf)).compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({}, run_id="r")
    assert r.status == "paused"
    assert [(i.id, i.node, i.payload, i.run_id) for i in r.interrupts] == [
        ("0:sub/0:sub/0:ask:0", "ask", {"q": "go?"}, "r/0/sub/0/sub")
    ]
    assert [i.id for i in app.pending_interrupts("r")] == ["0:sub/0:sub/0:ask:0"]
    r = app.resume_sync("r", answers={"0:sub/0:sub/0:ask:0": "yes"})
    assert r.status == "completed" and r.state.log == ["answer=yes"]
    assert app.pending_interrupts("r") == []
    # offline replay answers it from the recording, at its depth
    assert asyncio.run(app.replay("r")).identical
