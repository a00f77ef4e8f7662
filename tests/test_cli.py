"""The command line: run, runs, show, resume, graph; one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from flowstate.cli import app

runner = CliRunner()
G = "tests.cli_graphs:graph"


def test_run_runs_show_and_graph(tmp_path, monkeypatch):
    db = str(tmp_path / "cli.db")
    r = runner.invoke(app, ["run", G, "--input", '{"n": 5}', "--db", db, "--run-id", "r1"])
    assert r.exit_code == 0, r.output
    assert "run r1 completed" in r.output
    assert '"n": 16' in r.output
    r = runner.invoke(app, ["runs", "--db", db])
    assert r.exit_code == 0 and "r1" in r.output and "completed" in r.output
    r = runner.invoke(app, ["show", "r1", "--db", db, "--graph", G])
    assert r.exit_code == 0, r.output
    assert "step_a" in r.output and "step_b" in r.output and '"n": 16' in r.output
    r = runner.invoke(app, ["show", "r1", "--db", db, "--graph", G, "--step", "1"])
    assert '"n": 6' in r.output
    r = runner.invoke(app, ["show", "r1", "--db", db, "--graph", G, "--step", "1", "--diff"])
    assert '"before": 6' in r.output and '"after": 16' in r.output
    r = runner.invoke(app, ["graph", G])
    assert r.exit_code == 0 and r.output.startswith("flowchart TD")


def test_failure_then_resume(tmp_path, monkeypatch):
    db = str(tmp_path / "cli.db")
    monkeypatch.setenv("CLI_TEST_FAIL", "1")
    r = runner.invoke(app, ["run", G, "--db", db, "--run-id", "r2"])
    assert r.exit_code == 1
    assert "error: FS201: node 'step_b' failed in run r2 at step 1" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["runs", "--db", db, "--status", "failed"])
    assert "r2" in r.output and "failed" in r.output
    monkeypatch.setenv("CLI_TEST_FAIL", "0")
    r = runner.invoke(app, ["resume", "r2", "--db", db])
    assert r.exit_code == 1 and "--graph" in r.output
    r = runner.invoke(app, ["resume", "r2", "--db", db, "--graph", G])
    assert r.exit_code == 0, r.output
    assert '"n": 11' in r.output


def test_errors_are_one_line(tmp_path):
    db = str(tmp_path / "none.db")
    r = runner.invoke(app, ["runs", "--db", db])
    assert r.exit_code == 1 and "no checkpoint database" in r.output
    r = runner.invoke(app, ["run", "nosuchmodule:graph", "--db", db])
    assert r.exit_code == 1 and "cannot import module 'nosuchmodule'" in r.output
    r = runner.invoke(app, ["run", G, "--db", db, "--input", "{bad"])
    assert r.exit_code == 1 and "--input is not valid JSON" in r.output
    r = runner.invoke(app, ["run", G, "--db", db, "--input", '{"n": "x"}'])
    assert r.exit_code == 1 and "does not fit Counter" in r.output
    db2 = str(tmp_path / "cli.db")
    runner.invoke(app, ["run", G, "--db", db2, "--run-id", "x"])
    r = runner.invoke(app, ["show", "missing", "--db", db2])
    assert r.exit_code == 1 and "FS206: no run 'missing'" in r.output


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "flowstate"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flowstate.cli"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, check=True)
    for c in ("run", "runs", "show", "resume", "graph"):
        assert c in out.stdout
    db = str(tmp_path / "c.db")
    out = subprocess.run(
        [*cmd, "run", G, "--db", db, "-q"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout[out.stdout.index("{") :])["n"] == 11


def test_run_and_replay_a_prebuilt_graph_with_a_named_model(tmp_path):
    script = tmp_path / "script.json"
    script.write_text('["Final Answer: 42"]')
    db = str(tmp_path / "p.db")
    args = ["--db", db, "--llm", f"scripted:{script}"]
    r = runner.invoke(
        app,
        [
            "run",
            "flowstate.graphs:react_agent",
            "--input",
            '{"task": "what is 6*7?"}',
            "--run-id",
            "p1",
            *args,
        ],
    )
    assert r.exit_code == 0, r.output
    assert "run p1 completed" in r.output and '"status": "answered"' in r.output
    r = runner.invoke(app, ["replay", "p1", "--graph", "flowstate.graphs:react_agent", *args])
    assert r.exit_code == 0 and "replay identical" in r.output, r.output
    r = runner.invoke(app, ["run", "flowstate.graphs:react_agent", "--db", db])
    assert r.exit_code == 1 and "needs a model: pass --llm" in r.output
