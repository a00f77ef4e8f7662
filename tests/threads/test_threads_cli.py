"""``flowstate threads [THREAD]`` and ``flowstate prune --thread/--threads``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flowstate.cli import app as cli

from .chatgraph import make, user

runner = CliRunner()


def test_threads_lists_threads_and_turns_and_prune_removes_them(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    app = make(db)
    r1 = app.run_sync(user("hello"), thread_id="alice")
    r2 = app.run_sync(user("again"), thread_id="alice")
    app.run_sync(user("hi"), thread_id="bob")
    out = runner.invoke(cli, ["threads", "--db", db, "--json"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert [(r["thread_id"], r["turns"]) for r in rows] == [("bob", 1), ("alice", 2)]
    assert rows[1]["last_run_id"] == r2.run_id and rows[1]["last_status"] == "completed"
    out = runner.invoke(cli, ["threads", "alice", "--db", db, "--json"])
    turns = [json.loads(line) for line in out.output.splitlines()]
    assert [(t["turn"], t["run_id"]) for t in turns] == [(1, r1.run_id), (2, r2.run_id)]
    assert turns[1]["input"] == user("again")
    out = runner.invoke(cli, ["threads", "alice", "--db", db])
    assert out.exit_code == 0 and r2.run_id in out.output and "thread alice: 2 turns" in out.output
    out = runner.invoke(cli, ["threads", "carol", "--db", db])
    assert out.exit_code != 0 and "FS228" in out.output and "'carol'" in out.output
    # prune one thread's older turns: its latest stays
    out = runner.invoke(cli, ["prune", "--older-than", "0s", "--thread", "alice", "--db", db])
    assert out.exit_code == 0 and "deleted 1 run" in out.output and r1.run_id in out.output
    assert [t.run_id for t in app.thread("alice").turns] == [r2.run_id]
    # whole threads
    out = runner.invoke(cli, ["prune", "--older-than", "0s", "--threads", "--db", db])
    assert out.exit_code == 0 and "deleted 2 runs" in out.output
    assert app.threads() == []
