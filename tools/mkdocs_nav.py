"""MkDocs hook: every page in docs/ is in the site's navigation.

Pages listed in ``mkdocs.yml``'s ``nav`` keep their place and title. A page that is not
listed (one added by a later change) is appended to the section of its folder —
``tutorials/`` to Tutorials, ``guides/`` to How-to guides, ``concepts/`` to Concepts,
``reference/`` to Reference, anything else to More — titled by its first ``# `` heading.
So a new page is never left out of the site, and ``mkdocs build --strict`` never fails
because a page is not listed yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SECTIONS = {
    "tutorials": "Tutorials",
    "guides": "How-to guides",
    "concepts": "Concepts",
    "reference": "Reference",
}
"""Folder of docs/ → title of its nav section."""


def _listed(nav: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(nav, str):
        out.add(nav)
    elif isinstance(nav, list):
        for item in nav:
            out |= _listed(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            out |= _listed(value)
    return out


def _title(page: Path) -> str:
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.stem.replace("-", " ").replace("_", " ").capitalize()


def complete_nav(nav: list[Any], docs_dir: Path) -> list[Any]:
    """``nav`` with every Markdown page of ``docs_dir`` that it does not list appended to
    its folder's section (created at the end when missing)."""
    listed = _listed(nav)
    for page in sorted(docs_dir.rglob("*.md")):
        rel = page.relative_to(docs_dir).as_posix()
        if rel in listed:
            continue
        section = SECTIONS.get(rel.split("/")[0] if "/" in rel else "", "More")
        entry = {_title(page): rel}
        for item in nav:
            if isinstance(item, dict) and section in item and isinstance(item[section], list):
                item[section].append(entry)
                break
        else:
            nav.append({section: [entry]})
    return nav


def on_config(config: Any) -> Any:
    if config.nav:
        config.nav = complete_nav(config.nav, Path(config.docs_dir))
    return config
