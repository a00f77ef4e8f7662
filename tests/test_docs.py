"""The README stays true: its commands match CI and its Python blocks run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block and README.index(block.group(0)) < 30
    lines = [ln for ln in block.group(1).splitlines() if ln.strip()]
    assert len(lines) == 2
    assert "examples/" in lines[0] and "pytest" in lines[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert lines[1] in ci


def test_python_blocks_in_readme_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for i, code in enumerate(blocks):
        f = tmp_path / f"block{i}.py"
        f.write_text(code)
        out = subprocess.run(
            [sys.executable, str(f)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert out.returncode == 0, f"README python block {i} failed:\n{code}\n{out.stderr}"


def test_readme_example_works_with_the_commands_it_names(tmp_path):
    """README: `flowstate run drafter.py:app`, then `runs`/`show` with --graph alone."""
    code = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    (tmp_path / "drafter.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FLOWSTATE_DB", None)

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowstate.cli", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    out = cli("run", "drafter.py:app", "-i", '{"question": "q"}', "--run-id", "d1", "-q")
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr
    assert cli("runs", "--graph", "drafter.py:app").stdout.count("d1") == 1
    shown = cli("show", "d1", "--graph", "drafter.py:app")
    assert shown.returncode == 0 and '"rounds": 3' in shown.stdout
    assert (tmp_path / "runs.db").exists() and not (tmp_path / "flowstate.db").exists()


def test_every_error_code_is_in_the_error_reference():
    """docs/reference/errors.md lists every code an error class declares."""
    ref = (ROOT / "docs" / "reference" / "errors.md").read_text()
    codes = set()
    for path in (ROOT / "flowstate").rglob("*.py"):
        codes.update(re.findall(r'\bcode(?:: str)? = "(FSM?\d{3})"', path.read_text()))
        codes.update(re.findall(r'code="(FSM?\d{3})"', path.read_text()))
    assert {"FS101", "FS212", "FS400", "FS402"} <= codes
    missing = sorted(c for c in codes if f"| {c} |" not in ref)
    assert not missing, f"docs/reference/errors.md lacks {missing}"
