"""``InMemoryStore``'s maintenance: integrity check, sizes, child runs, deletion and
state-schema migration of a stored run."""

from __future__ import annotations

from typing import Any

from flowstate.errors import RunNotFound

from ._common import family, input_converter, is_direct_child
from ._memory_tables import Tables

__all__ = ["MemoryMaintenance"]


def _utf8_len(s: str | None) -> int:
    return 0 if s is None else len(s.encode("utf-8", "surrogatepass"))


class MemoryMaintenance:
    """Mixin of ``InMemoryStore``: uses its ``_t``, ``_lock``, ``fences``, ``_fence`` and
    ``commits``."""

    _t: Tables
    _lock: Any
    fences: dict[str, tuple[str, int]]
    _fence: Any
    commits: int

    def integrity_check(self) -> str:
        """Always ``"ok"``: the records were validated when they were made and cannot
        change."""
        return "ok"

    def table_sizes(self) -> dict[str, int]:
        """Row count of every table."""
        t = self._t
        with self._lock:
            return {
                "attempts": sum(len(m) for m in t.attempts.values()),
                "effects": sum(len(m) for m in t.effects.values()),
                "interrupts": sum(len(m) for m in t.interrupts.values()),
                "runs": len(t.runs),
                "signals": sum(len(m) for m in t.signals.values()),
                "steps": sum(len(m) for m in t.steps.values()),
                "writes": sum(len(m) for m in t.writes.values()),
            }

    def largest_runs(self, limit: int = 10) -> list[tuple[str, int]]:
        """The ``limit`` runs with the most payload bytes (UTF-8), largest first, as
        ``(run id, bytes)``: their writes (update, goto, usage), steps (tasks, joins,
        snapshot) and effects (request, response). Child runs count on their own."""
        t = self._t
        totals: dict[str, int] = {}
        with self._lock:
            for rid, wm in t.writes.items():
                if wm:
                    totals[rid] = totals.get(rid, 0) + sum(
                        _utf8_len(w.update) + _utf8_len(w.goto) + _utf8_len(w.usage)
                        for w in wm.values()
                    )
            for rid, sm in t.steps.items():
                if sm:
                    totals[rid] = totals.get(rid, 0) + sum(
                        _utf8_len(s.tasks) + _utf8_len(s.joins) + _utf8_len(s.snapshot)
                        for s in sm.values()
                    )
            for rid, em in t.effects.items():
                if em:
                    totals[rid] = totals.get(rid, 0) + sum(
                        _utf8_len(e.request) + _utf8_len(e.response) for e in em.values()
                    )
        out = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
        n = int(limit)
        return out[:n] if n >= 0 else out

    def child_run_ids(self, run_id: str) -> list[str]:
        """Ids of the direct child runs of ``run_id``'s subgraph activations, i.e. the
        runs with id ``run_id/<step>/<task_path>``, in id order."""
        prefix = run_id + "/"
        with self._lock:
            ids = [rid for rid in self._t.runs if rid.startswith(prefix)]
        return sorted(rid for rid in ids if is_direct_child(prefix, rid))

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything hanging off it, child runs included."""
        hit = family(run_id)
        with self._lock:
            for table in self._t.per_run():
                for rid in [rid for rid in table if hit(rid)]:
                    del table[rid]
            self.commits += 1

    # -- state-schema migration of a stored run --------------------------------------------

    def migrate_run(
        self,
        run_id: str,
        *,
        state: Any,
        update: Any,
        fingerprint: str,
        graph_doc: str,
    ) -> None:
        """Rewrite a run's stored JSON to a new state-schema version, all at once:
        ``state(raw) -> raw`` for the input and every snapshot, ``update(raw) -> raw`` for
        every committed update; the run then records the new graph fingerprint. If any
        conversion raises, nothing changes."""
        t = self._t
        with self._lock:
            if run_id in self.fences:
                self._fence(t, run_id)
            row = t.runs.get(run_id)
            if row is None:
                raise RunNotFound(run_id)
            base = row.base.model_copy(
                update={
                    "input": input_converter(row.base, state, update)(row.base.input),
                    "fingerprint": fingerprint,
                    "graph_doc": graph_doc,
                }
            )
            new_steps = {
                k: s if s.snapshot is None else s.model_copy(update={"snapshot": state(s.snapshot)})
                for k, s in (t.steps.get(run_id) or {}).items()
            }
            new_writes = {
                k: w.model_copy(update={"update": update(w.update)})
                for k, w in (t.writes.get(run_id) or {}).items()
            }
            row.base, row.cached = base, None
            if run_id in t.steps:
                t.steps[run_id] = new_steps
            if run_id in t.writes:
                t.writes[run_id] = new_writes
            self.commits += 1

    def shrink_wal(self) -> None:
        """Nothing to do: there is no log."""
