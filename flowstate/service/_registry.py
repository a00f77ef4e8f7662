"""The graphs a server may run: an allow-list chosen by the operator, never by a client.

A client names a graph; it never sends code, a module path or a graph document. The
registry is built in Python, or loaded from ``pkg.mod:ATTR`` given on the ``serve``
command line by the operator (the only import this package performs).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from flowstate.checkpoints import SQLiteStore
from flowstate.engine import CompiledGraph, GraphBuilder

from ._models import GRAPH_NAME_PATTERN

__all__ = ["GraphRegistry", "load_registry"]


class GraphRegistry(Mapping[str, CompiledGraph[Any]]):
    """Named graphs. The name is the graph's own name (``GraphBuilder(..., name=)``), the
    one stored with every run, so the API, the store and ``flowstate runs --graph`` agree.
    """

    def __init__(
        self,
        graphs: Mapping[str, CompiledGraph[Any] | GraphBuilder[Any]]
        | Iterable[CompiledGraph[Any] | GraphBuilder[Any]] = (),
    ) -> None:
        self._graphs: dict[str, CompiledGraph[Any]] = {}
        if isinstance(graphs, Mapping):
            named = cast("Mapping[str, CompiledGraph[Any] | GraphBuilder[Any]]", graphs)
            for name, g in named.items():
                self.register(g, name=name)
        else:
            for g in graphs:
                self.register(g)

    def register(
        self, graph: CompiledGraph[Any] | GraphBuilder[Any], *, name: str | None = None
    ) -> CompiledGraph[Any]:
        if isinstance(graph, GraphBuilder):
            graph = graph.compile()  # the store is bound later, by the service
        if not isinstance(graph, CompiledGraph):
            raise TypeError(
                f"graph {name or graph!r} is a {type(graph).__name__}; register a compiled "
                "graph (GraphBuilder(...).compile()) or a GraphBuilder"
            )
        name = graph.name if name is None else name
        if name != graph.name:
            raise ValueError(
                f"registry key '{name}' names graph '{graph.name}': runs are stored under the "
                f"graph's own name, so register it as '{graph.name}' or build it with "
                f"GraphBuilder(..., name='{name}')"
            )
        if not re.fullmatch(GRAPH_NAME_PATTERN, name):
            raise ValueError(
                f"graph name {name!r} cannot be served: use letters, digits, '_', '.' and "
                "'-' (at most 100 characters)"
            )
        if name in self._graphs and self._graphs[name] is not graph:
            raise ValueError(f"two graphs are registered as '{name}': give one another name")
        self._graphs[name] = graph
        return graph

    def bind(self, store: SQLiteStore) -> GraphRegistry:
        """The same graphs, all on ``store``."""
        out = GraphRegistry()
        for name, g in self._graphs.items():
            bound = g.bind(store)
            # older engines dropped breakpoints when rebinding; keep them either way
            bound.interrupt_before = g.interrupt_before
            bound.interrupt_after = g.interrupt_after
            out._graphs[name] = bound
        return out

    def __getitem__(self, name: str) -> CompiledGraph[Any]:
        return self._graphs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._graphs))

    def __len__(self) -> int:
        return len(self._graphs)

    def __repr__(self) -> str:
        return f"GraphRegistry({sorted(self._graphs)})"


def load_registry(target: str) -> GraphRegistry:
    """Import ``pkg.mod:ATTR`` named by the operator: a GraphRegistry, a dict of graphs, a
    list of graphs, or a function returning one of these."""
    if ":" not in target:
        raise ValueError(f"'{target}' is not module:attr; e.g. myapp.graphs:REGISTRY")
    mod_name, attr = target.rsplit(":", 1)
    if mod_name.endswith(".py") or "/" in mod_name:  # a path, as `flowstate run` takes
        path = Path(mod_name if mod_name.endswith(".py") else mod_name + ".py")
        if not path.is_file():
            raise ValueError(f"no file '{path}' (from '{target}'): check the path")
        sys.path.insert(0, str(path.parent.resolve()))
        mod_name = path.stem
    elif os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"cannot import module '{mod_name}': {e}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module '{mod_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, CompiledGraph | GraphBuilder | GraphRegistry):
        obj = obj()
    if isinstance(obj, GraphRegistry):
        return obj
    if isinstance(obj, Mapping | list | tuple):
        return GraphRegistry(obj)
    raise ValueError(
        f"'{target}' is a {type(obj).__name__}; point at a GraphRegistry, a dict of "
        "compiled graphs, or a list of them"
    )
