"""Every ```python block in docs/**/*.md runs.

The blocks of one page run in order, in one fresh Python process whose working directory is
a temporary directory, offline and without an API key (``ANTHROPIC_API_KEY`` and
``FLOWSTATE_*`` are removed from the environment). A block directly under the line
``<!-- no-run -->`` is illustrative and skipped. A block with a title
(```` ```python title="pipeline.py" ````, which Material shows as a file name) is a file the
reader saves: it is written to that path in the working directory, not executed, so later
blocks can import it or run it in a child process. A failure names the page, the block's line
and the traceback, whose line numbers are the Markdown file's own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_TITLE = re.compile(r'title="([^"]+)"')
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
NO_RUN = "<!-- no-run -->"


@dataclass(frozen=True)
class Block:
    line: int
    """1-based line of the first line of code (the line after the opening fence)."""
    code: str
    run: bool
    file: str | None = None
    """The block's ``title="..."``: a file to write instead of code to execute."""


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown page, in order, with their first code line."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), m.group("indent")
        lang = m.group("info").strip().split(" ")[0].split("{")[0].lower()
        prev = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence[0] * len(fence))
            and lines[j].strip().strip(fence[0]) == ""
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        if lang in ("python", "py"):
            title = _TITLE.search(m.group("info"))
            blocks.append(
                Block(i + 2, "\n".join(body) + "\n", prev != NO_RUN, title and title.group(1))
            )
        i = j + 1
    return blocks


# The child process: exec each block into __main__'s own namespace (so pydantic, pickling
# and dataclasses see a real module), compiled against the Markdown path with the block
# padded to its line, so tracebacks point into the page.
_DRIVER = r"""
import json, linecache, sys
page, blocks = json.loads(sys.stdin.read())
src = open(page, encoding="utf-8").read()
linecache.cache[page] = (len(src), None, src.splitlines(True), page)
for line, code, file in blocks:
    if file:
        open(file, "w", encoding="utf-8").write(code)
        continue
    print(f"--- block at {page}:{line}", file=sys.stderr, flush=True)
    exec(compile("\n" * (line - 1) + code, page, "exec"), globals())
"""


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if any(b.run for b in python_blocks(p.read_text())))


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWSTATE_", "ANTHROPIC_")) and k != "PYTHONPATH"
    }
    env["PYTHONPATH"] = str(ROOT)
    env["NO_COLOR"] = "1"
    return env


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_of_page_run(page: Path, tmp_path: Path) -> None:
    blocks = [(b.line, b.code, b.file) for b in python_blocks(page.read_text()) if b.run]
    out = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps([str(page), blocks]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert out.returncode == 0, (
        f"{page.relative_to(ROOT)}: a python block failed\n{out.stdout[-3000:]}\n"
        f"{out.stderr[-6000:]}"
    )


def test_block_parser_finds_blocks_lines_and_no_run_marks() -> None:
    text = (
        "# t\n\n```python\nx = 1\n```\n\n<!-- no-run -->\n```python\nboom()\n```\n"
        "```bash\nls\n```\n\n- item\n\n    ```python\n    y = x + 1\n    ```\n"
    )
    blocks = python_blocks(text)
    assert [(b.line, b.code, b.run) for b in blocks] == [
        (4, "x = 1\n", True),
        (9, "boom()\n", False),
        (18, "y = x + 1\n", True),
    ]


def test_a_failing_block_fails_with_the_page_line(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        'ok\n\n```python title="m.py"\nX = 1\n```\n\n```python\nfrom m import X\n'
        "assert X == 2, 'X is 1'\n```\n"
    )
    blocks = [(b.line, b.code, b.file) for b in python_blocks(page.read_text())]
    out = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps([str(page), blocks]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert out.returncode != 0
    assert (tmp_path / "m.py").read_text() == "X = 1\n"
    assert f'File "{page}", line 9' in out.stderr and "X is 1" in out.stderr


def test_mkdocs_builds_strictly_offline(tmp_path: Path) -> None:
    """The site builds with every warning an error; no plugin that fetches at build time."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    plugins = [p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]]
    for banned in ("privacy", "social", "material/privacy", "material/social"):
        assert banned not in plugins, f"the '{banned}' plugin downloads at build time"
    assert "inventories" not in json.dumps(config), "mkdocstrings inventories are fetched"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(), "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stderr[-6000:]
    assert (tmp_path / "s" / "index.html").exists()


def test_every_page_is_in_the_nav_even_when_not_listed(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from mkdocs_nav import complete_nav
    finally:
        sys.path.pop(0)
    docs = tmp_path / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "index.md").write_text("# Home\n")
    (docs / "guides" / "listed.md").write_text("# Listed\n")
    (docs / "guides" / "new.md").write_text("intro\n# A new guide\n")
    (docs / "ARCHITECTURE.md").write_text("# Architecture\n")
    nav = [{"Home": "index.md"}, {"How-to guides": [{"Listed": "guides/listed.md"}]}]
    assert complete_nav(nav, docs) == [
        {"Home": "index.md"},
        {"How-to guides": [{"Listed": "guides/listed.md"}, {"A new guide": "guides/new.md"}]},
        {"More": [{"Architecture": "ARCHITECTURE.md"}]},
    ]
