"""Errors that can be followed: the hint is a command that works as printed, the culprit
is the one blamed, and the message says only what is true."""

from __future__ import annotations

import re
import shlex
import textwrap
from typing import Literal

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from flowstate import END, START, GraphBuilder, GraphBuildError, InputRejected, RunNotFound
from flowstate.cli import app
from flowstate.engine import RouteError
from flowstate.errors import RunOwned


class S(BaseModel):
    n: int = 0


def a(s: S) -> dict:
    return {"n": s.n + 1}


def b(s: S) -> dict:
    return {"n": s.n + 10}


def c(s: S) -> dict:
    return {}


def test_the_fix_the_node_hint_is_a_command_that_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = "elsewhere.db"
    monkeypatch.setenv("CLI_TEST_FAIL", "1")
    r = CliRunner().invoke(app, ["run", "tests.cli_graphs:graph", "--db", db, "--run-id", "x"])
    assert r.exit_code == 1
    hint = re.search(r"`(flowstate resume [^`]*)`", r.stderr)
    assert hint, r.stderr
    assert hint.group(1) == f"flowstate resume x --graph tests.cli_graphs:graph --db {db}"
    monkeypatch.setenv("CLI_TEST_FAIL", "0")
    argv = shlex.split(hint.group(1))[1:]
    r = CliRunner().invoke(app, [*argv, "-q"])
    assert r.exit_code == 0, r.output
    assert '"n": 11' in r.stdout


def test_run_owned_suggests_the_wait_option_the_cli_has():
    msg = str(RunOwned("r9", "host:1:abc", 0.0))
    assert "flowstate resume r9 --wait SECONDS" in msg
    r = CliRunner().invoke(app, ["resume", "--help"])
    assert "--wait" in r.stdout


def _router_graph(target: str):
    def route(s: S) -> Literal["b", "__end__"]:
        return target  # type: ignore[return-value]

    g = GraphBuilder(S, name="routed")
    g.add_node(a).add_node(b)
    g.add_edge(START, "a").add_conditional_edges("a", route).add_edge("b", END)
    return g


def test_a_router_returning_an_undeclared_target_is_blamed(tmp_path):
    db = str(tmp_path / "r.db")
    app_ = _router_graph("c").compile(store=db)
    with pytest.raises(RouteError) as exc:
        app_.run_sync({}, run_id="r")
    msg = str(exc.value)
    assert msg.startswith("FS209: router 'route' after 'a' returned 'c'")
    assert "fix the router" in msg and "node 'a' failed" not in msg
    assert exc.value.run_id == "r" and app_.get_run("r").status == "failed"
    fixed = _router_graph("b").compile(store=db)
    assert fixed.resume_sync("r").state.n == 11  # a committed; b runs after the fix


def test_cannot_reach_end_says_loop_only_for_loops():
    g = GraphBuilder(S, name="chain")
    g.add_node(a).add_node(b).add_node(c)
    g.add_edge(START, "a").add_edge("a", "b").add_edge("b", "c")
    with pytest.raises(GraphBuildError) as exc:
        g.compile(store=":memory:")
    assert "loop" not in str(exc.value)
    assert "node 'a' cannot reach END: its edges lead only to 'b'" in str(exc.value)
    g = GraphBuilder(S, name="loop")
    g.add_node(a).add_node(b)
    g.add_edge(START, "a").add_edge("a", "b").add_edge("b", "a")
    with pytest.raises(GraphBuildError) as exc:
        g.compile(store=":memory:")
    assert "it is in a loop with no exit" in str(exc.value)


def test_a_router_without_targets_is_told_real_node_names():
    def route(s: S):
        return "b"

    g = GraphBuilder(S, name="untyped")
    g.add_node(a).add_node(b)
    g.add_edge(START, "a").add_conditional_edges("a", route).add_edge("b", END)
    with pytest.raises(GraphBuildError) as exc:
        g.compile(store=":memory:")
    assert "Literal['b', '__end__']" in str(exc.value)
    assert "Literal['a', 'b']" not in str(exc.value)


def test_unknown_input_fields_are_refused_by_name(tmp_path):
    app_ = _router_graph("b").compile(store=str(tmp_path / "i.db"))
    with pytest.raises(InputRejected) as exc:
        app_.run_sync({"n": 1, "nn": 2}, run_id="typo")
    assert "'nn'" in str(exc.value) and "its fields: n" in str(exc.value)
    with pytest.raises(RunNotFound):
        app_.get_run("typo")
    r = CliRunner().invoke(
        app,
        ["run", "tests.cli_graphs:graph", "--db", str(tmp_path / "c.db"), "-i", '{"m": 1}'],
    )
    assert r.exit_code == 1 and "FS210" in r.stderr and "'m'" in r.stderr


def test_a_graph_module_that_runs_at_import_is_warned_about(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eager.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            from flowstate import END, START, GraphBuilder

            class S(BaseModel):
                n: int = 0

            def a(s: S) -> dict:
                return {"n": s.n + 1}

            g = GraphBuilder(S, name="eager")
            g.add_node(a).add_edge(START, "a").add_edge("a", END)
            app = g.compile(store="eager.db")
            result = app.run_sync({})

            if __name__ == "__main__":
                app.run_sync({})
            """
        )
    )
    r = CliRunner().invoke(app, ["graph", "eager.py:app"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "line 14" in r.stderr and "__main__" in r.stderr
    (tmp_path / "calm.py").write_text(
        (tmp_path / "eager.py").read_text().replace("result = app.run_sync({})", "")
    )
    r = CliRunner().invoke(app, ["graph", "calm.py:app"])
    assert r.exit_code == 0 and "warning" not in r.stderr
