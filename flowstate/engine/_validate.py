"""Build-time checks (networkx). Every problem is collected, each names the fix."""

from __future__ import annotations

import difflib
import types
import typing
from itertools import combinations
from typing import TYPE_CHECKING, Any, get_args, get_origin

import networkx as nx
from pydantic import BaseModel

from ._overwrite import overwrite_inner
from ._types import END, START

if TYPE_CHECKING:
    from ._builder import GraphIR

__all__ = ["to_networkx", "validate"]


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def to_networkx(ir: GraphIR) -> nx.DiGraph:
    """Every possible transition of the graph, START and END included."""
    g = nx.DiGraph()
    g.add_nodes_from([START, *ir.nodes, END])
    for s, ds in ir.edges.items():
        for d in ds:
            g.add_edge(s, d, kind="edge")
    for j in ir.joins:
        for s in j.sources:
            g.add_edge(s, j.target, kind="join")
    for s, rs in ir.routers.items():
        for r in rs:
            for t in r.targets:
                g.add_edge(s, t, kind="router", router=r.name)
    for n, spec in ir.nodes.items():
        for t in spec.goto:
            g.add_edge(n, t, kind="goto")
    return g


def _strip(t: Any) -> Any:
    if get_origin(t) is typing.Annotated:
        return get_args(t)[0]
    return t


def _compatible(declared: Any, state_t: Any) -> bool:
    d, s = _strip(declared), _strip(state_t)
    if d == s or d is Any or s is Any:
        return True
    if isinstance(d, type) and isinstance(s, type):
        return issubclass(d, s)
    if get_origin(d) is not None and get_origin(d) == get_origin(s):
        return True
    return True  # generic or special forms we cannot compare: pydantic checks at run time


def _same_kind(declared: Any, state_t: Any) -> bool:
    """Stricter than ``_compatible``, for an ``Overwrite``'s whole value: the outer types
    must agree (``list`` against ``list[str]``), item types are left to pydantic."""
    d, s = _strip(declared), _strip(state_t)
    if d is Any or s is Any or d == s:
        return True
    if get_origin(s) in (typing.Union, types.UnionType):
        return any(_same_kind(d, a) for a in get_args(s))
    d, s = get_origin(d) or d, get_origin(s) or s
    if isinstance(d, type) and isinstance(s, type):
        return issubclass(d, s)
    return d == s or not (isinstance(d, type) or isinstance(s, type))


def _name(t: Any) -> str:
    t = _strip(t)
    return t.__name__ if isinstance(t, type) else repr(t).replace("typing.", "")


def validate(ir: GraphIR) -> list[str]:
    problems: list[str] = []
    known = sorted(ir.nodes)
    valid = set(known) | {START, END}
    fields = ir.schema.fields

    def check_target(where: str, t: str) -> bool:
        if t == START:
            problems.append(f"{where} targets START, which cannot be entered: target a node")
            return False
        if t not in valid:
            problems.append(
                f"{where} targets '{t}', which is not a node{_suggest(t, known)}: "
                f"add_node('{t}', ...) or fix the name"
            )
            return False
        return True

    for s, ds in ir.edges.items():
        if s == END:
            problems.append("an edge leaves END: END has no successors; remove the edge")
        elif s not in valid:
            problems.append(
                f"edge '{s}' -> ... starts at '{s}', which is not a node{_suggest(s, known)}: "
                f"add_node('{s}', ...) or fix the name"
            )
        for d in ds:
            check_target(f"edge '{s}' -> '{d}'", d)
    for j in ir.joins:
        for s in j.sources:
            if s not in ir.nodes:
                problems.append(
                    f"join {list(j.sources)} -> '{j.target}' waits for '{s}', which is not a "
                    f"node{_suggest(s, known)}: add it or fix the name"
                )
        check_target(f"join {list(j.sources)} -> '{j.target}'", j.target)
    for s, rs in ir.routers.items():
        if s not in valid or s == END:
            problems.append(
                f"conditional edges start at '{s}', which is not a node{_suggest(s, known)}"
            )
        for r in rs:
            if not r.targets:
                example = [n for n in ir.nodes if n != s][:2] or [s]
                example.append("__end__")
                lit = ", ".join(repr(n) for n in example)
                problems.append(
                    f"router '{r.name}' after '{s}' declares no targets: annotate its return "
                    f"with the nodes it may choose, e.g. Literal[{lit}], or pass "
                    f"targets=[{lit}] to add_conditional_edges"
                )
            for t in r.targets:
                check_target(f"router '{r.name}' after '{s}'", t)
    for n, spec in ir.nodes.items():
        for t in spec.goto:
            check_target(f"node '{n}' (goto)", t)

    # fields read through views and fields written. A node fed only by fan-out routers
    # (Sends) may take a payload model instead of a view; a node fed by a static edge, a
    # join or a single-target router reads the state, so its input model must be a view.
    # A router target whose input model is not a view of the state (it has fields the
    # state lacks) is a Send target, whatever the router's return annotation says: only a
    # Send can give it its input. A static edge or a join into it is a real problem.
    edge_fed = {d for ds in ir.edges.values() for d in ds} | {j.target for j in ir.joins}
    state_fed = edge_fed | {
        t
        for rs in ir.routers.values()
        for r in rs
        if not r.multi
        for t in r.targets
        if t not in ir.nodes or not ir.nodes[t].payload_only
    }
    for n, spec in ir.nodes.items():
        if (
            n in state_fed
            and spec.input_kind == "view"
            and isinstance(spec.input_type, type)
            and issubclass(spec.input_type, BaseModel)
            and spec.input_type is not ir.schema.model
        ):
            for f, info in spec.input_type.model_fields.items():
                if f not in fields:
                    problems.append(
                        f"node '{n}' reads '{f}' through view {spec.input_type.__name__}, but "
                        f"{ir.schema.name} has no field '{f}': add it to the state or the view "
                        f"reads nothing; or, if '{n}' takes a Send payload, reach it only "
                        f"through a router returning Send('{n}', {spec.input_type.__name__}"
                        "(...)), not by an edge or join"
                    )
                elif not _compatible(info.annotation, fields[f].annotation):
                    problems.append(
                        f"node '{n}' reads '{f}' as {info.annotation!r} but {ir.schema.name}."
                        f"{f} is {fields[f].annotation!r}: make the types match"
                    )
        if spec.writes:
            for f in sorted(spec.writes):
                if f not in fields:
                    problems.append(
                        f"node '{n}' declares it writes '{f}', but {ir.schema.name} has no "
                        f"field '{f}'{_suggest(f, sorted(fields))}: add the field or fix the "
                        "return annotation"
                    )
                elif (
                    f in spec.write_types
                    and fields[f].reducer is None
                    and not _compatible(spec.write_types[f], fields[f].annotation)
                ):
                    problems.append(
                        f"node '{n}' writes '{f}' as {spec.write_types[f]!r} but "
                        f"{ir.schema.name}.{f} is {fields[f].annotation!r}: make the types match"
                    )
                for inner in overwrite_inner(spec.write_types.get(f)):
                    if not _same_kind(inner, fields[f].annotation):
                        problems.append(
                            f"node '{n}' overwrites '{f}' with Overwrite[{_name(inner)}] but "
                            f"{ir.schema.name}.{f} is {_name(fields[f].annotation)}: an "
                            f"Overwrite replaces the whole value, so declare "
                            f"Overwrite[{_name(fields[f].annotation)}]"
                        )

    if problems:
        return problems  # structure checks below assume names resolve

    g = to_networkx(ir)
    if not any(True for _ in g.successors(START)):
        problems.append(
            "nothing starts the graph: add_edge(START, 'first_node') or "
            "add_conditional_edges(START, router)"
        )
        return problems
    reachable = nx.descendants(g, START)
    for n in known:
        if n not in reachable:
            problems.append(
                f"node '{n}' is not reachable from START: add an edge into it or remove it"
            )
    reaches_end = nx.ancestors(g, END)
    for n in known:
        if n in reachable and n not in reaches_end:
            if g.out_degree(n) == 0:
                problems.append(
                    f"node '{n}' has no outgoing edge, so the run can never finish from it: "
                    f"add_edge('{n}', END) or an edge to the next node"
                )
            elif any(n in nx.descendants(g, m) or m == n for m in g.successors(n)):
                problems.append(
                    f"node '{n}' cannot reach END (it is in a loop with no exit): add an edge "
                    "or a router target that leads to END"
                )
            else:
                nxt = ", ".join(repr(m) for m in sorted(g.successors(n)))
                problems.append(
                    f"node '{n}' cannot reach END: its edges lead only to {nxt}, which cannot "
                    "finish either; add an edge or a router target that leads to END"
                )
    problems += _parallel_conflicts(ir)
    return problems


def _parallel_conflicts(ir: GraphIR) -> list[str]:
    """Two nodes that can run in the same step and write a field without a reducer."""
    fields = ir.schema.fields
    out: list[str] = []
    seen: set[tuple[str, str, str]] = set()

    def unsafe(n: str) -> set[str]:
        w = ir.nodes[n].writes if n in ir.nodes else None
        return {f for f in (w or ()) if f in fields and fields[f].reducer is None}

    # one node activated several times in one step by Sends
    for s, rs in ir.routers.items():
        for r in rs:
            sends = r.multi and r.sends
            if not sends and not r.multi:  # a target only a Send can reach: a fan-out
                sends = any(t in ir.nodes and ir.nodes[t].payload_only for t in r.targets)
            if sends:
                for t in r.targets:
                    bad = sorted(unsafe(t))
                    if bad and (t, t, bad[0]) not in seen:
                        seen.add((t, t, bad[0]))
                        out.append(
                            f"router '{r.name}' after '{s}' may activate '{t}' several times in "
                            f"one step (a fan-out of Send), and '{t}' writes '{bad[0]}', which "
                            "has no "
                            f"reducer: declare `{bad[0]}: Annotated[..., append]` (or another "
                            "reducer); if the router never sends to it, annotate its return "
                            "as list[Literal[...]]"
                        )

    def branch_depths(start: str, limit: int) -> dict[str, set[int]]:
        depths: dict[str, set[int]] = {start: {0}}
        frontier = {start}
        for d in range(1, limit):
            nxt = {t for n in frontier for t in ir.edges.get(n, []) if t in ir.nodes}
            for t in nxt:
                depths.setdefault(t, set()).add(d)
            frontier = nxt
            if not frontier:
                break
        return depths

    fanouts: list[tuple[str, list[str]]] = []
    for s, ds in ir.edges.items():
        targets = [d for d in dict.fromkeys(ds) if d in ir.nodes]
        if len(targets) >= 2:
            fanouts.append((s, targets))
    for s, rs in ir.routers.items():
        for r in rs:
            fans = r.multi or any(t in ir.nodes and ir.nodes[t].payload_only for t in r.targets)
            if fans and len(r.targets) >= 2:
                fanouts.append((s, [t for t in r.targets if t in ir.nodes]))
    limit = len(ir.nodes) + 1
    for s, targets in fanouts:
        branches = [(t, branch_depths(t, limit)) for t in targets]
        for (_, da), (_, db) in combinations(branches, 2):
            for a, depths_a in da.items():
                for b, depths_b in db.items():
                    if a == b or not (depths_a & depths_b):
                        continue
                    for f in sorted(unsafe(a) & unsafe(b)):
                        key = (min(a, b), max(a, b), f)
                        if key in seen:
                            continue
                        seen.add(key)
                        out.append(
                            f"'{key[0]}' and '{key[1]}' can run in the same step (after "
                            f"'{s}') and both write '{f}', which has no reducer: declare "
                            f"`{f}: Annotated[..., append]` (or another reducer), or write "
                            "different fields"
                        )
    return out
