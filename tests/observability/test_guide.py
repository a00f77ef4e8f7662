"""The Python blocks of docs/guides/observability.md run, in order, in one fresh process
(the convention every docs page follows; ``<!-- no-run -->`` marks illustrative blocks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guides" / "observability.md"


def test_guide_blocks_run(tmp_path: Path):
    text = PAGE.read_text()
    blocks = [
        m.group(2)
        for m in re.finditer(r"(<!-- no-run -->\n)?```python\n(.*?)```", text, re.S)
        if not m.group(1)
    ]
    assert len(blocks) >= 2
    script = tmp_path / "page.py"
    script.write_text("\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    # the console exporter printed the tree, with the GenAI attributes
    assert '"name": "chat claude-sonnet-4-5"' in out.stdout
    assert '"gen_ai.usage.input_tokens": 9' in out.stdout
    assert '"name": "flowstate.run chat"' in out.stdout
    # the logging example tagged its record
    assert "doc-1 step=0 draft: drafting" in out.stderr
