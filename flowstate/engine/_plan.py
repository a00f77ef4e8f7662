"""The pure step algebra: finished activations + input state → merged state + next step.

No I/O here. Merge order is the order of the step's tasks (fixed when the step was
planned), never completion time, so the result is the same whatever the timing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from flowstate.errors import RouteError

from ._types import END, START, Send, Task

if TYPE_CHECKING:
    from ._builder import GraphIR
    from ._nodes import RouterSpec

__all__ = ["input_for", "plan_next", "start_tasks", "tasks_json"]


def input_for(kind: str, input_type: Any, state: BaseModel) -> Any:
    """The value a node or router receives: the state, or a view filled from it."""
    if kind == "state" or input_type is type(state):
        return state
    if kind == "none":
        return None
    if isinstance(input_type, type) and issubclass(input_type, BaseModel):
        return input_type.model_construct(
            **{
                f: getattr(state, f)
                for f in input_type.model_fields
                if f in type(state).model_fields
            }
        )
    return state


def _route(r: RouterSpec, state: BaseModel) -> list[str | Send]:
    arg = input_for(r.input_kind, r.input_type, state)
    try:
        out = r.fn(arg) if r.input_kind != "none" else r.fn()
    except Exception as e:
        raise RouteError(r.source, r.name, f"raised {type(e).__name__}: {e}") from e
    items = list(out) if isinstance(out, list | tuple) else [out]
    result: list[str | Send] = []
    for it in items:
        if r.mapping is not None and not isinstance(it, Send):
            if it not in r.mapping:
                raise RouteError(
                    r.source,
                    r.name,
                    f"returned {it!r}, which is not a key of its mapping "
                    f"{sorted(map(str, r.mapping))}",
                )
            it = r.mapping[it]
        target = it.node if isinstance(it, Send) else it
        if not isinstance(target, str) or (target not in r.targets and target != END):
            raise RouteError(
                r.source,
                r.name,
                f"returned {it!r}, which is not one of its declared targets "
                f"{list(r.targets)}: add it to the Literal[...] return annotation or targets=",
            )
        result.append(it)
    return result


def plan_next(
    ir: GraphIR,
    state: BaseModel,
    finished: Sequence[tuple[Task, list[str | Send]]],
    joins: dict[str, list[str]],
) -> tuple[list[Task], dict[str, list[str]]]:
    """Next step's tasks from the finished activations (in merge order) and the merged state."""
    if len(finished) == 1 and not joins and not finished[0][1]:
        static = _static_next(ir, finished[0][0].node)
        if static is not None:  # one activation whose node only has static edges
            return list(static), {}
    joins = {k: list(v) for k, v in joins.items()}
    targets: list[str | Send] = []
    for task, goto in finished:
        n = task.node
        targets.extend(ir.edges.get(n, ()))
        for j in ir.joins_by_source.get(n, ()):
            seen = joins.setdefault(j.id, [])
            if n not in seen:
                seen.append(n)
            if set(j.sources) <= set(seen):
                targets.append(j.target)
                joins[j.id] = []
        for r in ir.routers.get(n, ()):
            routed = _route(r, state)
            for it in routed:
                spec = ir.nodes.get(it) if isinstance(it, str) else None
                if spec is not None and spec.payload_only:
                    model = spec.input_type.__name__
                    raise RouteError(
                        r.source,
                        r.name,
                        f"returned '{it}', but '{it}' takes {model}, which is not a view of "
                        f"the state: return Send('{it}', {model}(...)) to give it its input",
                    )
            targets.extend(routed)
        targets.extend(goto)
    tasks: list[Task] = []
    seen_paths: set[str] = set()
    sends: dict[str, int] = {}
    for t in targets:
        if isinstance(t, Send):
            i = sends.get(t.node, 0)
            sends[t.node] = i + 1
            path = f"{t.node}[{i}]"
            tasks.append(Task(t.node, path, to_jsonable_python(t.payload), send=True))
        elif t == END:
            continue
        elif t not in seen_paths:
            seen_paths.add(t)
            tasks.append(Task(t, t))
    return tasks, {k: v for k, v in joins.items() if v}


def _static_next(ir: GraphIR, node: str) -> tuple[Task, ...] | None:
    """The next step of a step whose one activation of ``node`` chose no ``Command``
    target, when that is fixed by the graph (the node has static edges only: no router,
    no join); None otherwise. Computed once per node and kept on the graph."""
    cache: dict[str, tuple[Task, ...] | None] = ir.__dict__.setdefault("_static_next", {})
    if node in cache:
        return cache[node]
    fixed: tuple[Task, ...] | None = None
    if not ir.routers.get(node) and not ir.joins_by_source.get(node):
        seen: list[str] = []
        for t in ir.edges.get(node, ()):
            if t != END and t not in seen:
                seen.append(t)
        fixed = tuple(Task(t, t) for t in seen)
    cache[node] = fixed
    return fixed


_TASKS_JSON: dict[tuple[str, ...], str] = {}
"""``tasks_json`` of task lists without sends, by their paths (bounded below)."""


def tasks_json(tasks: Sequence[Task]) -> str:
    """The ``tasks`` column of a step row: the tasks' JSON, in order. A list of tasks
    without ``Send`` s (their node is their path) is the same text every time it recurs,
    so it is kept."""
    if any(t.send or t.node != t.path for t in tasks):
        return json.dumps([t.to_json() for t in tasks])
    key = tuple(t.path for t in tasks)
    text = _TASKS_JSON.get(key)
    if text is None:
        if len(_TASKS_JSON) >= 4096:
            _TASKS_JSON.clear()
        text = _TASKS_JSON[key] = json.dumps([t.to_json() for t in tasks])
    return text


def start_tasks(ir: GraphIR, state: BaseModel) -> list[Task]:
    tasks, _ = plan_next(ir, state, [(Task(START, START), [])], {})
    return tasks
