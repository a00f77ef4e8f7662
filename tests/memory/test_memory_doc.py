"""docs/guides/memory.md runs as written: its Python blocks in order, in one fresh process,
offline, in a scratch directory (blocks marked ``<!-- no-run -->`` are skipped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guides" / "memory.md"


def test_memory_guide_runs(tmp_path: Path) -> None:
    text = PAGE.read_text()
    fences = re.finditer(r"(<!-- no-run -->\n)?```python\n(.*?)```", text, re.S)
    blocks = [m.group(2) for m in fences if not m.group(1)]
    assert len(blocks) >= 2
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "['I like green tea']" in out.stdout
