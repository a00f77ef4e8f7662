"""`flowstate schedule ...` and `flowstate resume --due` on the command line: a schedule's
life cycle, and bad input refused in one line with its code."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flowstate.cli import app
from flowstate.clock import TestClock, use_clock

G = "tests.time_graphs:ticker"
ERROR_LINE = re.compile(r"^error: FS\d{3}: ")


def _cli(tmp_path: Path, *args: str) -> Any:
    """The command in this process (typer's runner), under a TestClock: quick."""
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        with use_clock(TestClock(1_800_000_000.0)):
            r = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(old)
    r.returncode = r.exit_code
    return r


def test_schedule_life_cycle_and_bad_input(tmp_path):
    db = str(tmp_path / "c.db")
    ok = _cli(tmp_path, "schedule", "add", "daily", "-g", G, "--db", db, "--cron", "0 7 * * 1-5",
              "--tz", "Europe/Paris", "--input", '{"n": 1}')  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "next 2027-01-18T06:00:00+00:00" in ok.stdout  # Monday 07:00 in Paris
    listed = _cli(tmp_path, "schedule", "list", "--db", db)
    assert "daily  ticker  0 7 * * 1-5 (Europe/Paris)  catchup=skip" in listed.stdout
    assert _cli(tmp_path, "schedule", "pause", "daily", "--db", db).returncode == 0
    assert "paused" in _cli(tmp_path, "schedule", "list", "--db", db).stdout
    assert _cli(tmp_path, "schedule", "resume", "daily", "--db", db).returncode == 0
    assert _cli(tmp_path, "schedule", "delete", "daily", "--db", db).returncode == 0
    assert _cli(tmp_path, "schedule", "list", "--db", db).stdout.strip() == ""
    add = ("schedule", "add", "x", "-g", G, "--db", db, "--cron")
    for argv, code in (
        ((*add, "61 * * * *"), "FS241"),
        ((*add, "* * * * *", "--tz", "Nowhere"), "FS241"),
        ((*add, "* * * * *", "--catchup", "some"), "FS241"),
        ((*add, "* * * * *", "-i", '{"n": "x"}'), "FS210"),
        (("schedule", "pause", "nope", "--db", db), "FS242"),
        (("schedule", "delete", "nope", "--db", db), "FS242"),
        (("schedule", "run", "-g", G, "--db", db, "--poll", "0"), "FS400"),
        (("resume", "--db", db, "-g", G), "FS400"),
        (("resume", "--due", "--db", db), "FS400"),
    ):  # fmt: skip
        r = _cli(tmp_path, *argv)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode != 0 and len(lines) == 1, (argv, r.stderr)
        assert ERROR_LINE.match(lines[0]) and code in lines[0], (argv, lines[0])
