"""Type checking is part of the test suite: pyright (basic mode, configured in
pyproject.toml's ``[tool.pyright]``) reports no error over ``flowstate/``.

It runs the ``pyright`` of the interpreter running the tests (the dev extra pins it), with
that interpreter's packages, so CI checks exactly what it installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_pyright_reports_no_error_over_flowstate() -> None:
    exe = Path(sys.executable).parent / "pyright"
    if not exe.exists():
        msg = f"pyright is not installed next to {sys.executable}: pip install -e '.[dev]'"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    proc = subprocess.run(
        [str(exe), "--outputjson", "--pythonpath", sys.executable],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    lines = [
        f"{Path(d['file']).relative_to(REPO)}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in errors
    ]
    assert report["summary"]["filesAnalyzed"] > 100
    assert not errors, f"{len(errors)} pyright errors:\n" + "\n".join(lines)
