"""The README's fleet line works when copied: its `flowstate enqueue` and `flowstate
worker` commands, run as written (``$PG`` set to a test schema), complete the run."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from flowstate.cli import app as _cli  # noqa: F401 - the CLI imports cleanly
from tests.fleet.conftest import Fleet, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_fleet_commands_work_as_written(fleet: Fleet, tmp_path: Path) -> None:
    (tmp_path / "drafter.py").write_text(re.findall(r"```python\n(.*?)```", README, re.S)[0])
    flat = " ".join(README.split())
    enqueue = re.search(r"`(flowstate enqueue [^`]*)`", flat)
    worker = re.search(r"`(flowstate worker [^`]*)`", flat)
    assert enqueue and worker, "the README names no fleet commands"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PG": fleet.url}

    def argv(command: str) -> list[str]:
        words = shlex.split(command.replace("$PG", fleet.url))
        assert words[0] == "flowstate"
        return [sys.executable, "-m", "flowstate.cli", *words[1:]]

    out = subprocess.run(
        argv(enqueue.group(1)),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    store = fleet.store()
    assert store.get_run(run_id).status == "queued"
    p = subprocess.Popen(argv(worker.group(1)), cwd=tmp_path, env=env)
    try:
        wait_until(lambda: store.get_run(run_id).status == "completed", 90, "the README run")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0
