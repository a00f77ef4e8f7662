"""Map-reduce, Command, subgraphs, retries, timeouts, concurrency, cancellation."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeFailed, RetryPolicy, Send, append
from tests.composition.graphs import Item, MapState, commands, map_reduce, nested, slow_loop

CHILD = str(Path(__file__).resolve().parent / "child.py")


def _calls(path: Path) -> Counter:
    with sqlite3.connect(path) as c:
        return Counter(r[0] for r in c.execute("SELECT what FROM calls"))


def test_map_reduce_with_100_sends(tmp_path):
    app = map_reduce(str(tmp_path / "calls.db")).compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({"items": list(range(100))})
    assert r.state.results == [i * i for i in range(100)]  # merged in send order
    assert r.state.total == sum(i * i for i in range(100))
    hist = app.history(r.run_id)
    assert [h.task_path for h in hist if h.node == "square"] == [f"square[{i}]" for i in range(100)]
    assert sum(1 for h in hist if h.node == "reduce") == 1


def test_100_sends_killed_mid_step_rerun_only_uncommitted(tmp_path):
    db, calls = tmp_path / "x.db", tmp_path / "calls.db"
    p = subprocess.Popen(
        [sys.executable, CHILD, "map", str(db), "r", str(calls), "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # wait until some (not all) sends have committed, then kill -9
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with sqlite3.connect(db) as c:
                n = c.execute("SELECT count(*) FROM writes WHERE node = 'square'").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= 1:
            break
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with sqlite3.connect(db) as c:
        committed = {r[0] for r in c.execute("SELECT task_path FROM writes WHERE node='square'")}
    assert 0 < len(committed) < 100, len(committed)
    out = subprocess.run(
        [sys.executable, CHILD, "map", str(db), "r", str(calls), "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    app = map_reduce().compile(store=str(db))
    state = app.get_state("r")
    assert state.results == [i * i for i in range(100)]
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT task_path, count(*) FROM writes GROUP BY 1").fetchall()
    assert all(n == 1 for _, n in rows) and len(rows) == 102
    # a committed send never runs again: its call count stays 1
    seen = _calls(calls)
    for path in committed:
        i = int(path[len("square[") : -1])
        assert seen[f"square:{i}"] == 1, path


def test_send_payload_is_validated_against_the_node_input(tmp_path):
    def bad_fan(s: MapState) -> list[Send]:
        return [Send("square", {"value": "not an int"})]

    async def square(item: Item) -> dict:
        return {"results": [item.value]}

    g = GraphBuilder(MapState).add_node("split", lambda s: None).add_node(square)
    g.add_edge(START, "split").add_conditional_edges("split", bad_fan, ["square"])
    g.add_edge("square", END)
    with pytest.raises(NodeFailed, match="Send payload does not fit"):
        g.compile(store=str(tmp_path / "x.db")).run_sync({})


def test_command_goto_and_mermaid(tmp_path):
    app = commands().compile(store=str(tmp_path / "x.db"))
    assert app.run_sync({"n": 3}).state.path == ["decide", "small"]
    assert app.run_sync({"n": 30}).state.path == ["decide", "big"]
    mm = app.to_mermaid()
    assert 'n_decide -. "goto" .-> n_small' in mm and 'n_decide -. "goto" .-> n_big' in mm


def test_undeclared_command_target_is_rejected(tmp_path):
    from flowstate import Command

    class S(BaseModel):
        n: int = 0

    def jump(s: S) -> Command:
        return Command(goto="elsewhere")

    g = GraphBuilder(S).add_node(jump, goto=["other"]).add_node("other", lambda s: None)
    g.add_edge(START, "jump").add_edge("other", END)
    with pytest.raises(NodeFailed, match="'elsewhere', which was not declared"):
        g.compile(store=str(tmp_path / "x.db")).run_sync({})


def test_subgraphs_nest_to_depth_3(tmp_path):
    app = nested(3).compile(store=str(tmp_path / "x.db"))
    r = app.run_sync({})
    assert r.state.trail == ["before1", "before2", "before3", "after3", "after2", "after1"]
    assert r.state.x == ((1 + 1 + 1) * 2 * 2) * 2
    hist = app.history(r.run_id)
    assert [(h.depth, h.node) for h in hist] == [
        (0, "before1"),
        (0, "sub2"),
        (1, "before2"),
        (1, "sub3"),
        (2, "before3"),
        (2, "after3"),
        (1, "after2"),
        (0, "after1"),
    ]
    assert hist[4].run_id == f"{r.run_id}/1/sub2/1/sub3"


def test_crash_at_depth_3_resumes_inside_the_subgraph(tmp_path):
    db, calls, marker = tmp_path / "x.db", tmp_path / "calls.db", tmp_path / "crashed"
    p = subprocess.run(
        [sys.executable, CHILD, "nest", str(db), "r", str(calls), str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == -signal.SIGKILL and marker.exists()
    p = subprocess.run(
        [sys.executable, CHILD, "nest", str(db), "r", str(calls), str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    seen = _calls(calls)
    # every node ran exactly once: resume continued inside the deepest subgraph
    assert seen == Counter(
        {"before1": 1, "before2": 1, "before3": 1, "after3": 1, "after2": 1, "after1": 1}
    )
    app = nested(3).compile(store=str(db))
    assert app.get_state("r").trail[-1] == "after1"


class R(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []


def test_retry_with_backoff_records_every_attempt(tmp_path):
    attempts = {"n": 0}

    def flaky(s: R) -> dict:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError(f"transient {attempts['n']}")
        return {"n": 1}

    g = GraphBuilder(R).add_node(flaky, retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
    g.add_edge(START, "flaky").add_edge("flaky", END)
    app = g.compile(store=str(tmp_path / "x.db"))
    events: list = []
    r = asyncio.run(app.run({}, on_event=events.append))
    assert r.state.n == 1 and attempts["n"] == 3
    recorded = app.store.attempts(r.run_id)
    assert [a.attempt for a in recorded] == [1, 2]
    assert "ConnectionError: transient 1" in recorded[0].error
    assert [e.attempt for e in events if e.kind == "node_retrying"] == [1, 2]


def test_retry_only_listed_exceptions(tmp_path):
    def broken(s: R) -> dict:
        raise ValueError("not transient")

    g = GraphBuilder(R).add_node(
        broken, retry=RetryPolicy(max_attempts=5, initial_delay=0.01, retry_on=(ConnectionError,))
    )
    g.add_edge(START, "broken").add_edge("broken", END)
    app = g.compile(store=str(tmp_path / "x.db"))
    with pytest.raises(NodeFailed, match="ValueError: not transient"):
        app.run_sync({}, run_id="r")
    assert len(app.store.attempts("r")) == 1


def test_backoff_is_exponential_with_bounded_jitter():
    p = RetryPolicy(initial_delay=1, backoff=2, max_delay=5, jitter=0.1)
    assert [round(p.delay(a, 0.5), 3) for a in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert 0.9 <= p.delay(1, 0.0) <= 1.1 and 0.9 <= p.delay(1, 1.0) <= 1.1


def test_timeout_fails_the_node_and_cancels_it(tmp_path):
    finished = {"v": False}

    async def slow(s: R) -> dict:
        await asyncio.sleep(5)
        finished["v"] = True
        return {"n": 1}

    g = GraphBuilder(R).add_node(slow, timeout=0.1).add_edge(START, "slow").add_edge("slow", END)
    t = time.monotonic()
    with pytest.raises(NodeFailed, match=r"overran its timeout of 0.1s"):
        g.compile(store=str(tmp_path / "x.db")).run_sync({})
    assert time.monotonic() - t < 2 and not finished["v"]


def test_max_concurrency_bounds_parallel_activations(tmp_path):
    running = {"now": 0, "peak": 0}

    async def work(s: R) -> dict:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await asyncio.sleep(0.02)
        running["now"] -= 1
        return {"log": ["w"]}

    g = GraphBuilder(R).add_node("head", lambda s: None)
    for i in range(8):
        g.add_node(f"w{i}", work).add_edge("head", f"w{i}").add_edge(f"w{i}", END)
    g.add_edge(START, "head")
    r = g.compile(store=str(tmp_path / "x.db")).run_sync({}, max_concurrency=3)
    assert len(r.state.log) == 8 and running["peak"] == 3


def test_cancel_stops_promptly_and_run_can_resume(tmp_path):
    app = slow_loop().compile(store=str(tmp_path / "x.db"))

    async def scenario():
        task = asyncio.create_task(app.run({}, run_id="c"))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        app.cancel("c")
        result = await task
        ack = time.monotonic() - t0
        n_after_ack = len(app.history("c"))
        await asyncio.sleep(0.3)
        return result, ack, n_after_ack

    result, ack, n = asyncio.run(scenario())
    assert result.status == "cancelled" and ack < 2
    assert app.get_run("c").status == "cancelled"
    assert len(app.history("c")) == n  # nothing committed after the ack
    # resumable
    app2 = slow_loop().compile(store=str(tmp_path / "x.db"))

    async def resume_some():
        task = asyncio.create_task(app2.resume("c"))
        await asyncio.sleep(0.2)
        app2.cancel("c")
        return await task

    assert asyncio.run(resume_some()).status == "cancelled"
    assert len(app2.history("c")) > n


def test_cancel_from_another_process_via_the_store(tmp_path):
    db = str(tmp_path / "x.db")
    app = slow_loop().compile(store=db)
    other = slow_loop().compile(store=db)  # stands in for another process's handle

    async def scenario():
        task = asyncio.create_task(app.run({}, run_id="x"))
        await asyncio.sleep(0.3)
        other.cancel("x")
        return await asyncio.wait_for(task, 5)

    r = asyncio.run(scenario())
    assert r.status == "cancelled"
