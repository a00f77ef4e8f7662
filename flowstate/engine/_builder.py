"""``GraphBuilder``: declare nodes and edges over a state model, then ``compile()``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from flowstate.errors import GraphBuildError

from ._edit import EDIT_NODE
from ._nodes import (
    NodeSpec,
    RetryPolicy,
    RouterSpec,
    UnresolvedAnnotation,
    analyse_node,
    analyse_router,
)
from ._state import StateSchema
from ._types import END, START

if TYPE_CHECKING:
    from flowstate.checkpoints import Durability, SQLiteStore

    from ._app import CompiledGraph
    from ._limits import Limits

__all__ = ["GraphBuilder", "GraphIR", "Join"]

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class Join:
    """``add_edge([a, b], c)``: c runs once every source has finished since c last ran."""

    id: str
    sources: tuple[str, ...]
    target: str


@dataclass
class GraphIR:
    """The compiled graph: what the scheduler runs and what diagrams are drawn from."""

    name: str
    schema: StateSchema
    nodes: dict[str, NodeSpec]
    edges: dict[str, list[str]]
    """Static edges by source, in declaration order (START included)."""
    joins: list[Join]
    routers: dict[str, list[RouterSpec]]
    joins_by_source: dict[str, list[Join]] = field(default_factory=dict)
    state_version: int = 1
    migrations: dict[int, Callable[..., Any]] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """A canonical JSON-able description, hashed into the run's fingerprint."""
        return {
            "name": self.name,
            "nodes": {n: spec.describe() for n, spec in sorted(self.nodes.items())},
            "edges": sorted([s, d] for s, ds in self.edges.items() for d in ds),
            "joins": sorted([list(j.sources), j.target] for j in self.joins),
            "routers": {
                s: sorted(t for r in rs for t in r.targets)
                for s, rs in sorted(self.routers.items())
            },
            "state": self.schema.json_schema(),
            "state_version": self.state_version,
        }

    def fingerprint(self) -> tuple[str, str]:
        # the IR never changes after build(); the state's JSON schema is costly to compute
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            doc = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
            cached = (hashlib.sha256(doc.encode()).hexdigest(), doc)
            self.__dict__["_fingerprint"] = cached
        return cached


class GraphBuilder(Generic[S]):
    """Declare a graph of typed nodes over one shared pydantic state.

    >>> g = GraphBuilder(State, name="demo")
    >>> g.add_node(plan); g.add_node(act)
    >>> g.add_edge(START, "plan"); g.add_edge("plan", "act"); g.add_edge("act", END)
    >>> app = g.compile(store="runs.db")
    """

    def __init__(self, state: type[S], *, name: str | None = None, version: int = 1) -> None:
        """``version`` is the version of the state schema; bump it when the state model
        changes in a way stored runs must be migrated for, and register the migration with
        ``add_migration``."""
        self.schema = StateSchema(state)
        self.state = state
        self.name = name or f"{state.__name__.lower()}_graph"
        self.version = version
        self._migrations: dict[int, Callable[..., Any]] = {}
        self._nodes: dict[str, NodeSpec] = {}
        self._edges: dict[str, list[str]] = {}
        self._joins: list[Join] = []
        self._routers: dict[str, list[RouterSpec]] = {}
        self._problems: list[str] = []

    # -- declaration -------------------------------------------------------------------

    def add_node(
        self,
        name_or_fn: str | Callable[..., Any] | Any,
        fn: Callable[..., Any] | Any | None = None,
        *,
        goto: Sequence[str] | None = None,
        retry: RetryPolicy | Sequence[RetryPolicy] | int | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        input_map: Mapping[str, str] | None = None,
        output_map: Mapping[str, str] | None = None,
    ) -> GraphBuilder[S]:
        """Add a node: a sync or async callable, or a compiled graph (a subgraph).

        ``goto`` lists the targets a ``Command`` returned by the node may choose.
        ``retry`` (a RetryPolicy, a list of them tried in order, or a number of attempts)
        and ``timeout`` (seconds) are per-node policies; ``max_visits`` bounds how often
        the node may run in one run.
        For a subgraph, ``input_map``/``output_map`` map parent fields to child fields
        (default: fields with the same name).
        """
        if fn is None:
            fn = name_or_fn
            name = getattr(fn, "__name__", None) or getattr(fn, "name", None)
            if not isinstance(name, str):
                self._problems.append(
                    f"node {fn!r} has no __name__: pass a name, add_node('name', fn)"
                )
                return self
        else:
            name = str(name_or_fn)
        if name in (START, END, EDIT_NODE):
            self._problems.append(f"'{name}' is reserved: give the node another name")
            return self
        if name in self._nodes:
            self._problems.append(f"node '{name}' is added twice: give the second one another name")
            return self
        from ._app import CompiledGraph

        if isinstance(fn, CompiledGraph):
            spec = _subgraph_spec(name, fn, self.state, input_map, output_map)
        elif callable(fn):
            try:
                spec = analyse_node(name, fn, self.state)
            except UnresolvedAnnotation as e:
                self._problems.append(f"node '{name}': {e}")
                return self
        else:
            self._problems.append(f"node '{name}' is {fn!r}, which is not callable")
            return self
        spec.goto = tuple(goto or ())
        if isinstance(retry, int):
            retry = RetryPolicy(max_attempts=retry)
        if retry is None:
            spec.retry = ()
        elif isinstance(retry, RetryPolicy):
            spec.retry = (retry,)
        else:
            spec.retry = tuple(retry)
        spec.timeout = timeout
        spec.max_visits = max_visits
        self._nodes[name] = spec
        return self

    def add_edge(self, source: str | Sequence[str], target: str) -> GraphBuilder[S]:
        """``add_edge(a, b)``: b runs after a. ``add_edge([a, b], c)``: c waits for both."""
        if isinstance(source, str):
            self._edges.setdefault(source, []).append(target)
        else:
            sources = tuple(dict.fromkeys(source))
            if len(sources) == 1:
                return self.add_edge(sources[0], target)
            self._joins.append(Join(f"join:{'+'.join(sources)}>{target}", sources, target))
        return self

    def add_conditional_edges(
        self,
        source: str,
        router: Callable[..., Any],
        targets: Sequence[str] | Mapping[Any, str] | None = None,
    ) -> GraphBuilder[S]:
        """After ``source``, call ``router(state)`` to choose the next node(s).

        The possible targets come from the router's ``Literal[...]`` return annotation, or
        from ``targets`` (a list, or a mapping from return values to node names). A router
        may return one target, a list of targets (static fan-out), END, or ``Send`` items.
        """
        try:
            spec = analyse_router(source, router, self.state, targets)
        except UnresolvedAnnotation as e:
            self._problems.append(f"router after '{source}': {e}")
            return self
        self._routers.setdefault(source, []).append(spec)
        return self

    def add_migration(
        self, from_version: int, fn: Callable[..., dict[str, Any]]
    ) -> GraphBuilder[S]:
        """Register how stored JSON of state version ``from_version`` becomes version
        ``from_version + 1``. ``fn(doc)`` or ``fn(doc, kind)`` receives a dict of fields —
        a whole state (``kind == "state"``: inputs and snapshots) or one update
        (``kind == "update"``: only the fields a node wrote) — and returns the new dict.
        Resume, history, state_at and replay apply the chain to runs recorded with an
        older version; a run recorded with a different schema and no migration is refused.
        """
        if from_version in self._migrations:
            self._problems.append(f"two migrations from state version {from_version}: keep one")
        self._migrations[from_version] = fn
        return self

    # -- compilation ---------------------------------------------------------------------

    def build(self) -> GraphIR:
        """Validate and return the graph's IR; raises GraphBuildError listing every problem."""
        from ._validate import validate

        ir = GraphIR(
            name=self.name,
            schema=self.schema,
            nodes=dict(self._nodes),
            edges={k: list(v) for k, v in self._edges.items()},
            joins=list(self._joins),
            routers={k: list(v) for k, v in self._routers.items()},
            state_version=self.version,
            migrations=dict(self._migrations),
        )
        problems = list(self._problems) + validate(ir)
        for v in sorted(self._migrations):
            if not 1 <= v < self.version:
                problems.append(
                    f"a migration from state version {v} cannot lead to the current version "
                    f"{self.version}: migrations go from 1..{self.version - 1} to the next "
                    "version; bump version= or remove it"
                )
        if problems:
            raise GraphBuildError(self.name, problems)
        for j in ir.joins:
            for s in j.sources:
                ir.joins_by_source.setdefault(s, []).append(j)
        return ir

    def compile(
        self,
        *,
        store: str | SQLiteStore | None = None,
        durability: Durability = "normal",
        max_steps: int = 10_000,
        interrupt_before: Sequence[str] = (),
        interrupt_after: Sequence[str] = (),
        max_concurrency: int | None = None,
        limits: Limits | None = None,
        lease_ttl: float | None = None,
        events: bool = True,
    ) -> CompiledGraph[S]:
        """Validate the graph and bind it to a checkpoint store.

        ``store`` is a path to an SQLite file (default: ``$FLOWSTATE_DB`` or
        ``./flowstate.db``), ``":memory:"``, or a store object. ``max_steps`` bounds the
        number of activations of a run (default 10,000); reaching it pauses the run.
        ``max_concurrency`` bounds how many activations of one step run at once.
        ``limits`` sets byte limits and token/cost budgets (see ``Limits``).
        ``events=False`` keeps no run events in the store (its ``events`` table, which
        ``flowstate`` commands, the inspector and other service processes follow): a run's
        ``on_event`` / ``stream`` still get them. See ``bench/README.md`` for their cost.
        """
        from ._app import CompiledGraph

        ir = self.build()
        bad = [n for n in (*interrupt_before, *interrupt_after) if n not in ir.nodes]
        if bad:
            raise GraphBuildError(
                self.name,
                [f"breakpoint on unknown node '{n}': use one of {sorted(ir.nodes)}" for n in bad],
            )
        return CompiledGraph(
            ir,
            store=store,
            durability=durability,
            max_steps=max_steps,
            interrupt_before=tuple(interrupt_before),
            interrupt_after=tuple(interrupt_after),
            max_concurrency=max_concurrency,
            limits=limits,
            lease_ttl=lease_ttl,
            events=events,
        )


def _subgraph_spec(
    name: str,
    sub: Any,
    parent_state: type[BaseModel],
    input_map: Mapping[str, str] | None,
    output_map: Mapping[str, str] | None,
) -> NodeSpec:
    child_fields = set(sub.ir.schema.fields)
    parent_fields = set(parent_state.model_fields)
    if output_map is None:
        output_map = {f: f for f in sorted(child_fields & parent_fields)}
    if input_map is None:
        input_map = {f: f for f in sorted(child_fields & parent_fields)}

    async def _placeholder(state: Any) -> Any:  # replaced by the scheduler
        raise NotImplementedError

    return NodeSpec(
        name=name,
        fn=_placeholder,
        is_async=True,
        input_kind="state",
        input_type=parent_state,
        ctx_param=None,
        writes=frozenset(output_map.keys()) if output_map else frozenset(),
        subgraph=sub,
        input_map=dict(input_map),
        output_map=dict(output_map),
    )
