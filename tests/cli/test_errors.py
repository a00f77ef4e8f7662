"""Every command, driven with bad input of every kind, prints one line with a code and
exits non-zero; --debug (or FLOWSTATE_DEBUG=1) shows the traceback. The commands are
walked from the CLI's own registry, so a command added later is driven too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from flowstate.cli import app

ROOT = Path(__file__).resolve().parents[2]
G = "tests.cli_graphs:graph"
ERROR_LINE = re.compile(r"^error: FS[0-9A-Z]{3,4}: \S")

CREATES = {"run", "serve", "enqueue", "worker"}  # they create a missing SQLite file
NAME_FILTERS = {"runs"}
"""Commands whose --graph may also be a plain graph name (a filter), not only module:attr."""
"""Commands that create their database when it is missing (the others refuse: FS402)."""


@dataclass(frozen=True)
class Case:
    command: str
    kind: str
    argv: tuple[str, ...]


def _group():
    return typer.main.get_command(app)


def _valid(param, db: str) -> list[str] | None:
    """A valid value for a required parameter, by its name."""
    name = param.name
    values = {
        "graph": G,
        "target": G,
        "graphs": "tests.cli_graphs:REGISTRY",
        "run_id": "r1",
        "older_than": "30d",
        "at": "0",
    }
    if name not in values:
        return None
    if param.param_type_name == "argument":
        return [values[name]]
    return [param.opts[0], values[name]]


def _cases(db: str) -> list[Case]:
    """Bad input of each kind for every registered command that takes it."""
    cases: list[Case] = []
    for name, cmd in sorted(_group().commands.items()):
        params = [p for p in cmd.params if p.name != "help"]
        required: list[str] = []
        for p in params:
            if p.required:
                v = _valid(p, db)
                assert v is not None, f"the walker has no valid value for {name} {p.name}"
                required += v
        has_db = any(p.name == "db" for p in params)
        base = [name, *required, *(["--db", db] if has_db else [])]

        def add(kind: str, *argv: str, _name: str = name) -> None:
            cases.append(Case(_name, kind, tuple(argv)))

        add("unknown option", *base, "--no-such-option")
        if any(p.required for p in params):
            add("missing argument", name)
        for p in params:
            opt = p.opts[0] if p.param_type_name == "option" else None
            if opt and p.bare_type() in ("int", "float"):
                add(f"{opt} not a number", *base, opt, "lots")
            if p.name in ("graph", "target", "graphs"):
                rest = [a for a in base if a not in (G, "tests.cli_graphs:REGISTRY")]
                if opt:
                    rest = [a for a in rest if a != opt]
                for kind, bad in (
                    ("no module:attr", "tests.cli_graphs"),
                    ("no such module", "tests.no_such_module:graph"),
                    ("no such attribute", "tests.cli_graphs:nothing"),
                    ("a node function", "tests.cli_graphs:step_a"),
                    ("the state class", "tests.cli_graphs:Counter"),
                    ("a missing file", "tests/no_such_file.py:graph"),
                ):
                    if kind == "no module:attr" and name in NAME_FILTERS:
                        continue
                    where = [opt, bad] if opt else [bad]
                    add(f"{p.name}: {kind}", rest[0], *where, *rest[1:])
            if p.name in ("input", "value", "set_"):
                add(f"{opt} bad JSON", *base, opt, "{bad")
                add(f"{opt} missing @file", *base, opt, "@missing.json")
            if p.name == "db":
                without = [a for a in base if a not in ("--db", db)]
                add("--db not a database", *without, "--db", "notes.txt")
                if name not in CREATES:
                    add("--db missing", *without, "--db", "missing.db")
            if p.name == "run_id" and p.param_type_name == "argument":
                add("unknown run", *[("no-such-run" if a == "r1" else a) for a in base])
            if p.name == "llm":
                add("--llm bad spec", *base, "--llm", "nonsense")
    return cases


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("walk")
    (d / "notes.txt").write_text("these are notes, not an SQLite database\n" * 200)
    db = d / "walk.db"
    r = CliRunner().invoke(app, ["run", G, "--db", str(db), "--run-id", "r1", "-q"])
    assert r.exit_code == 0, r.output
    return d, str(db)


def _run(case: Case, cwd: Path) -> tuple[int, str]:
    argv = list(case.argv)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(app, argv)
    finally:
        os.chdir(old)
    return r.exit_code, r.stderr


def test_the_walker_covers_every_command():
    db = "x.db"
    covered = {c.command for c in _cases(db)}
    assert covered == set(_group().commands), "a registered command has no bad-input case"
    kinds = {c.kind.split(":")[-1].strip() for c in _cases(db)}
    for kind in ("a node function", "the state class", "--input missing @file", "unknown run"):
        assert kind in kinds


def test_every_command_refuses_bad_input_in_one_line_with_a_code(workdir, monkeypatch):
    cwd, db = workdir
    # `serve` would listen forever on input it accepted: if the server starts, the command
    # exits 0 at once instead, and that counts as a failure below.
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: sys.exit(0))
    monkeypatch.setenv("FLOWSTATE_TOKEN", "t")
    monkeypatch.delenv("FLOWSTATE_DEBUG", raising=False)
    failures = []
    for case in _cases(db):
        code, err = _run(case, cwd)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if code == 0 or len(lines) != 1 or not ERROR_LINE.match(lines[0]):
            failures.append(f"{case.command} [{case.kind}] exit {code}: {err.strip()[:300]!r}")
    assert not failures, "\n".join(failures)


def test_debug_shows_the_traceback(workdir, monkeypatch):
    cwd, _ = workdir
    monkeypatch.delenv("FLOWSTATE_DEBUG", raising=False)
    for argv in (["run", "tests.cli_graphs:step_a"], ["run", G, "--input", "@missing.json"]):
        code, err = _run(Case("run", "plain", tuple(argv)), cwd)
        assert code != 0 and "Traceback" not in err
        code, err = _run(Case("run", "debug", (*argv, "--debug")), cwd)
        assert code != 0 and "Traceback (most recent call last)" in err
        assert ERROR_LINE.match(err.strip().splitlines()[-1])
    code, err = _run(Case("run", "plain again", ("run", "tests.cli_graphs:step_a")), cwd)
    assert "Traceback" not in err, "--debug must not stick to later commands"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWSTATE_DEBUG": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "flowstate.cli", "run", "tests.cli_graphs:Counter"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode != 0 and "Traceback (most recent call last)" in out.stderr


def test_anthropic_without_a_key_is_one_line(workdir, monkeypatch):
    cwd, _ = workdir
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    argv = ("run", "flowstate.graphs:react_agent", "--llm", "anthropic:claude-sonnet-4-5")
    code, err = _run(Case("run", "no key", (*argv, "--input", '{"task": "x"}')), cwd)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert ERROR_LINE.match(lines[0]) and "ANTHROPIC_API_KEY" in lines[0]


def test_runs_json_into_a_closed_pipe_is_quiet(workdir):
    """`flowstate runs --json | head -1`: the reader goes away; no traceback, no noise."""
    cwd, db = workdir
    p = subprocess.Popen(
        [sys.executable, "-m", "flowstate.cli", "runs", "--json", "--db", db],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader is gone before the first line is written
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert p.returncode in (0, 1, 141)  # typer exits 1 on EPIPE, quietly
