"""Graph identity and state-schema versions: is a stored run compatible with this graph,
and which migrations bring its stored JSON to the current state version."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowstate.checkpoints import RunRecord
from flowstate.errors import GraphMismatch

from ._rows import parse

if TYPE_CHECKING:
    from ._builder import GraphIR

__all__ = ["GraphIdentity", "graph_diff"]

Migration = Callable[..., Any]
"""``fn(doc)`` or ``fn(doc, kind)`` registered with ``GraphBuilder.add_migration``."""


class GraphIdentity:
    """Owns a compiled graph's fingerprint and its state-schema migrations: whether a
    stored run may continue with this graph, and how its stored JSON is brought to the
    current state version."""

    def __init__(self, ir: GraphIR) -> None:
        self.ir = ir
        self.fingerprint, self.graph_doc = ir.fingerprint()
        """The graph's fingerprint and the JSON document it hashes (stored with each run)."""
        self._chains: dict[str, list[Migration]] = {}
        """run id -> the migrations its stored JSON needs (cached per run)."""

    def check(self, run: RunRecord, allow_graph_change: bool = False) -> None:
        """Refuse (``GraphMismatch`` with a readable diff) a run recorded with another
        graph, unless only the state schema changed and migrations cover it."""
        if run.fingerprint == self.fingerprint or allow_graph_change:
            return
        old = parse("graph_doc", run.graph_doc, "runs", run.id, None)
        new = json.loads(self.graph_doc)
        structure = lambda d: {k: v for k, v in d.items() if k not in ("state", "state_version")}  # noqa: E731
        if structure(old) == structure(new) and self.chain(run):
            return  # only the state schema changed, and migrations cover it
        diff = graph_diff(old, new)
        if old.get("state") != new.get("state"):
            v_old, v_new = old.get("state_version", 1), self.ir.state_version
            if v_old == v_new:
                diff.append(
                    f"! the state schema changed but its version is still {v_new}: bump "
                    f"GraphBuilder(..., version={v_new + 1}) and register "
                    f"add_migration({v_new}, fn) to migrate stored runs"
                )
            else:
                missing = [v for v in range(v_old, v_new) if v not in self.ir.migrations]
                if missing:
                    diff.append(f"! no migration registered from state version(s) {missing}")
        raise GraphMismatch(run.id, diff)

    def chain(self, run: RunRecord) -> list[Migration] | None:
        """The migrations that bring this run's stored JSON to the current state version:
        [] when it is current, None when no chain exists."""
        recorded = parse("graph_doc", run.graph_doc, "runs", run.id, None).get("state_version", 1)
        if recorded == self.ir.state_version:
            return []
        if recorded > self.ir.state_version:
            return None
        chain: list[Migration] = []
        for v in range(recorded, self.ir.state_version):
            fn = self.ir.migrations.get(v)
            if fn is None:
                return None
            chain.append(fn)
        return chain

    def migrate(self, run: Callable[[], RunRecord], run_id: str, raw: str, kind: str) -> str:
        """``raw`` (a stored state or update of run ``run_id``) at the current state
        version; ``run()`` loads the run row the first time the run is seen."""
        chain = self._chains.get(run_id)
        if chain is None:
            chain = self.chain(run()) or []
            self._chains[run_id] = chain
        if not chain:
            return raw
        doc = json.loads(raw)
        for fn in chain:
            try:
                n_params = len(inspect.signature(fn).parameters)
            except (TypeError, ValueError):
                n_params = 1
            doc = fn(doc, kind) if n_params >= 2 else fn(doc)
        return json.dumps(doc)

    def forget(self, run_id: str) -> None:
        """The run's stored JSON was migrated in place: it needs no chain any more."""
        self._chains.pop(run_id, None)


def graph_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between two graph documents."""
    out: list[str] = []
    on, nn = set(old.get("nodes", {})), set(new.get("nodes", {}))
    out += [f"- node '{n}' removed" for n in sorted(on - nn)]
    out += [f"+ node '{n}' added" for n in sorted(nn - on)]
    for n in sorted(on & nn):
        if old["nodes"][n] != new["nodes"][n]:
            out.append(f"~ node '{n}' changed: {old['nodes'][n]} -> {new['nodes'][n]}")
    for key in ("edges", "joins"):
        oe = {json.dumps(e) for e in old.get(key, [])}
        ne = {json.dumps(e) for e in new.get(key, [])}
        out += [f"- {key[:-1]} {e} removed" for e in sorted(oe - ne)]
        out += [f"+ {key[:-1]} {e} added" for e in sorted(ne - oe)]
    if old.get("routers") != new.get("routers"):
        out.append(f"~ routers changed: {old.get('routers')} -> {new.get('routers')}")
    op = old.get("state", {}).get("properties", {})
    np_ = new.get("state", {}).get("properties", {})
    out += [f"- state field '{f}' removed" for f in sorted(set(op) - set(np_))]
    out += [f"+ state field '{f}' added" for f in sorted(set(np_) - set(op))]
    out += [f"~ state field '{f}' retyped" for f in sorted(set(op) & set(np_)) if op[f] != np_[f]]
    if not out and old != new:
        out.append("~ the graph document differs (state schema details)")
    return out
