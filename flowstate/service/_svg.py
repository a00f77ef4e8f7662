"""The graph drawn as SVG on the server, from the run's stored graph document.

Why server-side and not Mermaid in the browser: the stored graph document (nodes, edges,
joins, routers; ``RunRecord.graph_doc``) is all a drawing needs, so a read-only inspector
draws a run without importing its graph code, and the page ships no 3 MB renderer. The
Mermaid text (``CompiledGraph.to_mermaid``) is still offered for copying.

Layout: layers by longest path from START over the graph without its back edges (loops),
END last; nodes ordered within a layer by the mean position of their predecessors (a few
sweeps of the barycenter heuristic); forward edges are curves downwards, back edges bend
round the right-hand side.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["STATUS_COLOURS", "graph_svg"]

START, END = "__start__", "__end__"

STATUS_COLOURS: dict[str, tuple[str, str]] = {
    # status: (fill, stroke)
    "ran": ("#d9f2dc", "#2e7d32"),
    "running": ("#dbe9fb", "#1565c0"),
    "failed": ("#fbdada", "#c62828"),
    "paused": ("#fff1cc", "#b26a00"),
    "interrupted": ("#f3e0f7", "#7b1fa2"),
    "never_reached": ("#f2f2f2", "#9e9e9e"),
    "terminal": ("#ffffff", "#424242"),
}

_H = 34
_LAYER_GAP = 74
_X_GAP = 28
_CHAR = 7.4


def _edges(doc: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, conditional) for every edge the document declares."""
    out: list[tuple[str, str, bool]] = [(s, d, False) for s, d in doc.get("edges", [])]
    for sources, target in doc.get("joins", []):
        out += [(s, target, False) for s in sources]
    for s, targets in doc.get("routers", {}).items():
        out += [(s, t, True) for t in targets]
    for n, spec in doc.get("nodes", {}).items():
        out += [(n, t, True) for t in (spec or {}).get("goto", []) or []]
    seen: set[tuple[str, str]] = set()
    unique = []
    for s, d, c in out:
        if (s, d) not in seen:
            seen.add((s, d))
            unique.append((s, d, c))
    return unique


def _layers(names: list[str], edges: list[tuple[str, str, bool]]) -> dict[str, int]:
    succ: dict[str, list[str]] = {n: [] for n in names}
    for s, d, _ in edges:
        if s in succ and d in succ:
            succ[s].append(d)
    # back edges: found by an iterative DFS from START (then from anything unvisited)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}
    for root in [START, *names]:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            if i < len(succ[node]):
                stack[-1] = (node, i + 1)
                nxt = succ[node][i]
                if state.get(nxt) == 1:
                    back.add((node, nxt))
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                stack.pop()
    layer = {n: 0 for n in names}
    # longest path over the DAG (Kahn order)
    indeg = {n: 0 for n in names}
    for s in names:
        for d in succ[s]:
            if (s, d) not in back and d != s:
                indeg[d] += 1
    ready = [n for n in names if indeg[n] == 0]
    while ready:
        n = ready.pop()
        for d in succ[n]:
            if (n, d) in back or d == n:
                continue
            layer[d] = max(layer[d], layer[n] + 1)
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    if END in layer:
        layer[END] = max([v for k, v in layer.items() if k != END], default=0) + 1
    return layer


def graph_svg(doc: dict[str, Any], nodes: dict[str, tuple[str, int]]) -> str:
    """The graph of ``doc`` with each node's ``(status, visits)`` from ``nodes``."""
    names = [START, *sorted(doc.get("nodes", {})), END]
    edges = [(s, d, c) for s, d, c in _edges(doc) if s in names and d in names]
    layer = _layers(names, edges)
    rows: dict[int, list[str]] = {}
    for n in names:
        rows.setdefault(layer[n], []).append(n)
    preds: dict[str, list[str]] = {n: [] for n in names}
    for s, d, _ in edges:
        if layer[s] < layer[d]:
            preds[d].append(s)
    pos = {n: float(i) for r in rows.values() for i, n in enumerate(r)}
    for _ in range(4):
        for k in sorted(rows):
            row = rows[k]
            row.sort(
                key=lambda n: sum(pos[p] for p in preds[n]) / len(preds[n]) if preds[n] else pos[n]
            )
            for i, n in enumerate(row):
                pos[n] = float(i)

    def label(n: str) -> str:
        return "start" if n == START else "end" if n == END else n

    def badge_w(visits: int) -> float:
        return 16 + 7 * len(f"×{visits}")

    def width(n: str) -> float:
        visits = nodes.get(n, ("", 0))[1]
        extra = badge_w(visits) + 6 if visits else 0
        return max(64.0, len(label(n)) * _CHAR + 26 + extra)

    row_w = {k: sum(width(n) for n in r) + _X_GAP * (len(r) - 1) for k, r in rows.items()}
    total_w = max(row_w.values()) + 120  # room on the right for back edges
    box: dict[str, tuple[float, float, float]] = {}  # x (centre), y (top), w
    for k, r in rows.items():
        x = (total_w - 120 - row_w[k]) / 2 + 20
        for n in r:
            w = width(n)
            box[n] = (x + w / 2, 20 + k * _LAYER_GAP, w)
            x += w + _X_GAP
    height = 20 + (max(rows) + 1) * _LAYER_GAP
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="fs-graph" viewBox="0 0 '
        f'{total_w:.0f} {height:.0f}" width="{total_w:.0f}" height="{height:.0f}" '
        f'role="img" aria-label="graph {escape(str(doc.get("name", "")))}">',
        '<defs><marker id="fs-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#616161"/></marker></defs>',
    ]
    right = total_w - 60
    for s, d, conditional in edges:
        sx, sy, sw = box[s]
        dx, dy, dw = box[d]
        dash = ' stroke-dasharray="5 4"' if conditional else ""
        if s == d:  # a node that loops on itself: a small arc on its right
            x0, y0 = sx + sw / 2, sy + _H / 2
            path = (
                f"M{x0:.1f},{y0 - 8:.1f} C{x0 + 42:.1f},{y0 - 30:.1f} "
                f"{x0 + 42:.1f},{y0 + 30:.1f} {x0:.1f},{y0 + 8:.1f}"
            )
        elif layer[d] > layer[s]:
            y0, y1 = sy + _H, dy
            mid = (y0 + y1) / 2
            path = f"M{sx:.1f},{y0:.1f} C{sx:.1f},{mid:.1f} {dx:.1f},{mid:.1f} {dx:.1f},{y1:.1f}"
        else:  # a loop: out of the right side, round, into the right side of the target
            x0, x1 = sx + sw / 2, dx + dw / 2
            y0, y1 = sy + _H / 2, dy + _H / 2
            bend = max(right, x0 + 30, x1 + 30)
            path = f"M{x0:.1f},{y0:.1f} C{bend:.1f},{y0:.1f} {bend:.1f},{y1:.1f} {x1:.1f},{y1:.1f}"
        out.append(
            f'<path class="fs-edge" data-from="{escape(s)}" data-to="{escape(d)}" d="{path}" '
            f'fill="none" stroke="#616161" stroke-width="1.4"{dash} '
            'marker-end="url(#fs-arrow)"/>'
        )
    for n in names:
        x, y, w = box[n]
        if n in (START, END):
            fill, stroke = STATUS_COLOURS["terminal"]
            status, visits, rx = "terminal", 0, _H / 2
        else:
            status, visits = nodes.get(n, ("never_reached", 0))
            fill, stroke = STATUS_COLOURS.get(status, STATUS_COLOURS["never_reached"])
            rx = 6
        sub = (doc.get("nodes", {}).get(n) or {}).get("kind") == "subgraph"
        name = escape(n)
        out.append(
            f'<g class="fs-node fs-{status}" data-node="{name}" data-status="{status}" '
            f'data-visits="{visits}" tabindex="0">'
            f"<title>{escape(label(n))}: {status.replace('_', ' ')}"
            f"{f', {visits} visit' + ('s' if visits != 1 else '') if visits else ''}</title>"
            f'<rect x="{x - w / 2:.1f}" y="{y:.1f}" width="{w:.1f}" height="{_H}" rx="{rx}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{2 if sub else 1.6}"/>'
        )
        if sub:
            out.append(
                f'<rect x="{x - w / 2 + 3:.1f}" y="{y + 3:.1f}" width="{w - 6:.1f}" '
                f'height="{_H - 6}" rx="4" fill="none" stroke="{stroke}" stroke-width="1"/>'
            )
        bw = badge_w(visits) if visits else 0.0
        tx = x - (bw / 2 + 3 if visits else 0)
        out.append(
            f'<text x="{tx:.1f}" y="{y + _H / 2 + 4.5:.1f}" text-anchor="middle" '
            f'font-family="system-ui, sans-serif" font-size="13" fill="#212121">'
            f"{escape(label(n))}</text>"
        )
        if visits:
            bx = x + w / 2 - 6 - bw  # the badge's left edge
            out.append(
                f'<rect x="{bx:.1f}" y="{y + 8:.1f}" width="{bw:.0f}" height="18" rx="9" '
                f'fill="{stroke}"/><text class="fs-visits" x="{bx + bw / 2:.1f}" '
                f'y="{y + 21:.1f}" text-anchor="middle" font-family="system-ui, sans-serif" '
                f'font-size="11" fill="#fff">×{visits}</text>'
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
