"""Mermaid diagrams, drawn from the same compiled IR the scheduler runs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._types import END, START

if TYPE_CHECKING:
    from ._builder import GraphIR

__all__ = ["to_mermaid"]


def _id(name: str) -> str:
    if name == START:
        return "__start__"
    if name == END:
        return "__end__"
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _label(name: str) -> str:
    return name.replace('"', "#quot;")


def to_mermaid(ir: GraphIR) -> str:
    """``flowchart TD`` text: solid edges are static, dashed ones conditional or Command
    targets, and join edges are drawn into a join marker."""
    lines = ["flowchart TD", f'    {_id(START)}(["start"])', f'    {_id(END)}(["end"])']
    for n, spec in ir.nodes.items():
        shape = f'[["{_label(n)}"]]' if spec.subgraph is not None else f'["{_label(n)}"]'
        lines.append(f"    {_id(n)}{shape}")
    for s, ds in ir.edges.items():
        for d in ds:
            lines.append(f"    {_id(s)} --> {_id(d)}")
    for i, j in enumerate(ir.joins):
        jid = f"join_{i}"
        lines.append(f'    {jid}(("join"))')
        for s in j.sources:
            lines.append(f"    {_id(s)} --> {jid}")
        lines.append(f"    {jid} --> {_id(j.target)}")
    for s, rs in ir.routers.items():
        for r in rs:
            for t in r.targets:
                lines.append(f'    {_id(s)} -. "{_label(r.name)}" .-> {_id(t)}')
    for n, spec in ir.nodes.items():
        for t in spec.goto:
            lines.append(f'    {_id(n)} -. "goto" .-> {_id(t)}')
    return "\n".join(lines) + "\n"
