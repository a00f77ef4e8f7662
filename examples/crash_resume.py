"""A research pipeline that is killed mid-run (SIGKILL) and resumed in a new process.

Runs offline: no API key, no server; checkpoints go to an SQLite file. Each node does its
"expensive" work through ``ctx.effect`` so the work is journaled. The script starts the
run in a child process, kills it with SIGKILL after three nodes have committed, then
resumes the run here: the three finished nodes are not run again.

    python examples/crash_resume.py            # the whole demo
    flowstate graph examples/crash_resume.py:graph
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, append

STAGES = ["collect", "clean", "analyse", "draft", "review", "publish"]
DELAY = float(os.environ.get("DEMO_STAGE_SECONDS", "0.3"))
"""How long each stage's "work" takes (the test suite sets 0)."""


class Report(BaseModel):
    topic: str
    notes: Annotated[list[str], append] = []
    """One line per finished stage."""
    ran_in: Annotated[list[str], append] = []
    """Which process ran each stage: shows that nothing ran twice."""


def make_stage(name: str):
    async def stage(state: Report, ctx: NodeContext) -> dict[str, list[str]]:
        async def work(topic: str) -> str:
            await asyncio.sleep(DELAY)  # stands in for an LLM call or a tool
            return f"{name} done for {topic!r}"

        note = await ctx.effect(name, work, state.topic)
        return {"notes": [note], "ran_in": [f"{name}@pid{os.getpid()}"]}

    stage.__name__ = name
    return stage


def build() -> GraphBuilder[Report]:
    g = GraphBuilder(Report, name="report_pipeline")
    prev = START
    for name in STAGES:
        g.add_node(make_stage(name))
        g.add_edge(prev, name)
        prev = name
    g.add_edge(prev, END)
    return g


graph = build().compile(store=os.environ.get("FLOWSTATE_DB", "flowstate.db"))


def committed(db: Path, run_id: str) -> int:
    try:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT count(*) FROM writes WHERE run_id = ?", [run_id]).fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> None:
    db = Path(tempfile.mkdtemp(prefix="flowstate-demo-")) / "demo.db"
    run_id = "demo-run"
    env = {**os.environ, "FLOWSTATE_DB": str(db)}
    print(f"checkpoints: {db}")
    print(f"1. starting run {run_id} in a child process ...")
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", run_id],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while committed(db, run_id) < 3:
        if child.poll() is not None:
            raise SystemExit("the child finished before it could be killed; try again")
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    print(
        f"2. killed the child (pid {child.pid}) with SIGKILL after "
        f"{committed(db, run_id)} committed nodes"
    )

    app = build().compile(store=str(db))
    status = app.get_run(run_id).status
    print(f"3. the store still says the run is {status!r}; resuming it in pid {os.getpid()} ...")
    result = app.resume_sync(run_id)
    print(f"4. run {result.run_id}: {result.status}")
    for line in result.state.ran_in:
        print(f"   {line}")
    pids = {line.split("@")[1] for line in result.state.ran_in}
    assert len(result.state.ran_in) == len(STAGES), "every stage ran exactly once"
    print(f"   {len(STAGES)} stages, each run exactly once, across {len(pids)} processes.")
    print(json.dumps({"status": result.status, "notes": result.state.notes}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        graph.run_sync({"topic": "durable agents"}, run_id=sys.argv[2])
    else:
        main()
