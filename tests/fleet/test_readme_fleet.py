"""The README's fleet lines work when copied: its `flowstate enqueue` and `flowstate
worker` commands, run as written (``$PG`` set to a test schema; ``runs.db`` an SQLite
file in the test's directory), complete the run."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from flowstate.cli import app as _cli  # noqa: F401 - the CLI imports cleanly
from tests.fleet.conftest import Fleet, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _commands(db: str) -> tuple[str, str]:
    """The README's `flowstate enqueue` and `flowstate worker` commands on ``db``."""
    flat = " ".join(README.split())
    enqueue = [c for c in re.findall(r"`(flowstate enqueue [^`]*)`", flat) if db in c]
    worker = [c for c in re.findall(r"`(flowstate worker [^`]*)`", flat) if db in c]
    assert enqueue and worker, f"the README names no fleet commands on {db}"
    return enqueue[0], worker[0]


def test_the_readme_fleet_commands_work_as_written(fleet: Fleet, tmp_path: Path) -> None:
    _run_as_written(tmp_path, "$PG", fleet.url, fleet.store())


def test_the_readme_sqlite_fleet_commands_work_as_written(tmp_path: Path) -> None:
    _run_as_written(tmp_path, "runs.db", "runs.db", None)


def _run_as_written(tmp_path: Path, db: str, url: str, store: Any) -> None:
    (tmp_path / "drafter.py").write_text(re.findall(r"```python\n(.*?)```", README, re.S)[0])
    enqueue, worker = _commands(db)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PG": url}

    def argv(command: str) -> list[str]:
        words = shlex.split(command.replace("$PG", url))
        assert words[0] == "flowstate"
        return [sys.executable, "-m", "flowstate.cli", *words[1:]]

    out = subprocess.run(
        argv(enqueue),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    if store is None:  # the SQLite file the command made, in its working directory
        from flowstate.checkpoints import SQLiteStore

        store = SQLiteStore(tmp_path / url)
    assert store.get_run(run_id).status == "queued"
    p = subprocess.Popen(argv(worker), cwd=tmp_path, env=env)
    try:
        wait_until(lambda: store.get_run(run_id).status == "completed", 90, "the README run")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0
