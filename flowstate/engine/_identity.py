"""Graph identity and state-schema versions: is a stored run compatible with this graph,
and which migrations bring its stored JSON to the current state version."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from flowstate.checkpoints import RunRecord
from flowstate.errors import GraphMismatch

from ._rows import parse

__all__ = ["IdentityMixin", "graph_diff"]


class IdentityMixin:
    """Part of ``CompiledGraph``: fingerprint checks and migrations."""

    def check_graph(self, run: RunRecord, allow_graph_change: bool = False) -> None:
        if run.fingerprint == self.fingerprint or allow_graph_change:
            return
        old = parse("graph_doc", run.graph_doc, "runs", run.id, None)
        new = json.loads(self.graph_doc)
        structure = lambda d: {k: v for k, v in d.items() if k not in ("state", "state_version")}  # noqa: E731
        if structure(old) == structure(new) and self._migration_chain(run):
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

    def _migration_chain(self, run: RunRecord) -> list[Callable[..., Any]] | None:
        """The migrations that bring this run's stored JSON to the current state version:
        [] when it is current, None when no chain exists."""
        recorded = parse("graph_doc", run.graph_doc, "runs", run.id, None).get("state_version", 1)
        if recorded == self.ir.state_version:
            return []
        if recorded > self.ir.state_version:
            return None
        chain = [self.ir.migrations.get(v) for v in range(recorded, self.ir.state_version)]
        return None if any(f is None for f in chain) else chain  # type: ignore[return-value]

    def _migrate(self, run_id: str, raw: str, kind: str) -> str:
        chain = self._chains.get(run_id)
        if chain is None:
            run = self.store.get_run(run_id)
            chain = self._migration_chain(run) or []
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
