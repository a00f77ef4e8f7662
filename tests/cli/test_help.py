"""`--help` of every command reads well at 80 columns, and `flowstate runs` fits 80."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from flowstate.cli import app

G = "tests.cli_graphs:graph"
BOX = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]")


def _flat(text: str) -> str:
    """The help's words in order: box drawing and line wrapping removed."""
    return " ".join(BOX.sub(" ", text).split())


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    return [[], *([name] for name in sorted(group.commands))]  # type: ignore[attr-defined]


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: a[0] if a else "flowstate")
def test_help_reads_well_at_80_columns(argv, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERMINAL_WIDTH", "80")
    r = CliRunner().invoke(app, [*argv, "--help"], terminal_width=80)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert not re.search(r"<(bool|str|int|float|list\[str\])>", r.output), r.output
    flat = _flat(r.output)
    group = typer.main.get_command(app)
    cmd = group.commands[argv[0]] if argv else group  # type: ignore[attr-defined]
    # every sentence of the command's description, and of every option's help, is there
    # whole: nothing was cut where a line of source happened to break
    assert " ".join((cmd.help or "").split()) in flat
    for p in cmd.params:
        if getattr(p, "help", None):
            assert " ".join(p.help.split()) in flat, f"{p.name}: help cut: {p.help!r}"
    if not argv:  # the command list: each summary whole on its row(s)
        for sub in group.commands.values():  # type: ignore[attr-defined]
            first = " ".join((sub.help or "").split("\n\n")[0].split())
            assert first in flat, f"summary of {sub.name} is cut"


def test_runs_fits_80_columns_one_line_per_run(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    db = str(tmp_path / "r.db")
    runner = CliRunner()
    for i in range(3):
        runner.invoke(app, ["run", G, "--db", db, "-q", "--run-id", f"run-{i}-0123456789"])
    monkeypatch.setenv("CLI_TEST_FAIL", "1")
    runner.invoke(app, ["run", G, "--db", db, "-q", "--run-id", "failing-0123456789"])
    r = runner.invoke(app, ["runs", "--db", db], terminal_width=80)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert all(len(ln) <= 80 for ln in lines), "\n".join(lines)
    assert len(lines) == 1 + 4  # a header, then exactly one line per run
    assert lines[0].split() == ["id", "graph", "status", "steps", "updated", "note"]
    failed = next(ln for ln in lines if ln.startswith("failing"))
    assert "failed" in failed and "node 'step_b'" in failed and failed.endswith("…")
