"""Reading a run for the inspector: overview, paged timeline, state at a step with its
diff, an activation's effects.

Everything here reads the checkpoint store through its public methods, in bounded pieces,
so a 10,000-step run opens as fast as a 10-step one: the overview reads the run row, the
head step and per-node visit counts (one grouped query) and sums usage; the timeline
reads one page of steps; a state is rebuilt from the nearest snapshot (the engine bounds
the distance). With the run's graph served, states are rebuilt by the graph's own
reducers (``CompiledGraph.state_at``); without it (``flowstate ui`` with no ``--graphs``:
graph code is never loaded from the database) the nearest snapshot is shown with the
updates after it.
"""

from __future__ import annotations

import json
from typing import Any

from flowstate.checkpoints import CheckpointStore, RunRecord, WriteRecord
from flowstate.engine import CompiledGraph, Limits, pending_interrupts
from flowstate.errors import GraphMismatch, RunStateError

from ._inspect_models import (
    ActivationEntry,
    DiffItem,
    EffectEntry,
    EffectsPage,
    InterruptEntry,
    NodeView,
    RunLink,
    RunOverview,
    StateAtStep,
    TimelinePage,
)
from ._registry import GraphRegistry
from ._svg import END, START, graph_svg

__all__ = ["MAX_DIFF_ITEMS", "RunInspector", "json_diff"]

MAX_DIFF_ITEMS = 500
"""A diff longer than this is cut (the last item says how many more there were)."""
MAX_LINKS = 100
LLM_EFFECT = "llm.complete"
TOOL_PREFIX = "tool:"


def _loads(raw: str | None, default: Any = None) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def interrupt_id(step: int, task_path: str, seq: int) -> str:
    return f"{step}:{task_path}:{seq}"


def _node_of(task_path: str) -> str:
    return task_path.split("[", 1)[0]


def json_diff(before: Any, after: Any, path: str = "") -> list[DiffItem]:
    """Structural diff of two JSON values: dict keys and list positions recurse; an
    appended list tail is reported as additions."""
    out: list[DiffItem] = []
    _diff(before, after, path, out)
    if len(out) > MAX_DIFF_ITEMS:
        extra = len(out) - MAX_DIFF_ITEMS
        out = out[:MAX_DIFF_ITEMS]
        out.append(DiffItem(path="…", op="change", after=f"{extra} more changes not shown"))
    return out


def _diff(a: Any, b: Any, path: str, out: list[DiffItem]) -> None:
    if len(out) > MAX_DIFF_ITEMS:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            p = f"{path}/{k}" if path else str(k)
            if k not in b:
                out.append(DiffItem(path=p, op="remove", before=a[k]))
            elif k not in a:
                out.append(DiffItem(path=p, op="add", after=b[k]))
            elif a[k] != b[k]:
                _diff(a[k], b[k], p, out)
        return
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            p = f"{path}/{i}"
            if i >= len(a):
                out.append(DiffItem(path=p, op="add", after=b[i]))
            elif i >= len(b):
                out.append(DiffItem(path=p, op="remove", before=a[i]))
            elif a[i] != b[i]:
                _diff(a[i], b[i], p, out)
        return
    if a != b or type(a) is not type(b):
        out.append(DiffItem(path=path or "/", op="change", before=a, after=b))


class RunInspector:
    """Read models of runs over one store; ``graphs`` (bound to that store) may be empty."""

    def __init__(self, store: CheckpointStore, graphs: GraphRegistry) -> None:
        self.store = store
        self.graphs = graphs

    # -- helpers --------------------------------------------------------------------------

    def graph_for(self, run: RunRecord) -> CompiledGraph[Any] | None:
        """The served graph that can rebuild this run's states (same graph, or a change
        its migrations cover), or None."""
        graph = self.graphs.get(run.graph)
        if graph is None:
            return None
        try:
            graph.check_graph(run)
        except GraphMismatch:
            return None
        return graph

    def usage(self, run_id: str) -> tuple[int, dict[str, int]]:
        """(committed activations, summed token usage) of a run's own activations."""
        return self.store.usage_totals(run_id)

    @staticmethod
    def cost(run: RunRecord, tokens: dict[str, int]) -> float | None:
        config = _loads(run.config, {})
        raw = config.get("limits") if isinstance(config, dict) else None
        if not isinstance(raw, dict):
            return None
        try:
            limits = Limits(**raw)
        except ValueError:
            return None
        if not (limits.input_price_per_mtok or limits.output_price_per_mtok):
            return None
        return round(limits.cost(tokens.get("input_tokens", 0), tokens.get("output_tokens", 0)), 6)

    @staticmethod
    def duration_ms(run: RunRecord) -> float:
        return round((run.updated_at - run.created_at) * 1000, 1)

    def stats(self, run: RunRecord) -> dict[str, Any]:
        """Per-run numbers of the runs list: duration, activations, tokens, cost."""
        n, tokens = self.usage(run.id)
        return {
            "duration_ms": self.duration_ms(run),
            "activations": n,
            "tokens": tokens.get("input_tokens", 0) + tokens.get("output_tokens", 0),
            "cost_usd": self.cost(run, tokens),
        }

    # -- overview -------------------------------------------------------------------------

    def overview(self, run_id: str) -> RunOverview:
        store = self.store
        run = store.get_run(run_id)
        doc = _loads(run.graph_doc, {})
        doc = doc if isinstance(doc, dict) else {}
        visits = store.visit_counts(run_id)
        head = store.latest_step(run_id)
        head_tasks = _loads(head.tasks, []) if head is not None else []
        head_nodes = {t.get("path", ""): t.get("node", "") for t in head_tasks}
        committed_at_head = (
            {w.task_path for w in store.writes(run_id, head.step, head.step + 1)}
            if head is not None
            else set()
        )
        open_nodes = {n for p, n in head_nodes.items() if p not in committed_at_head}
        # pending: the engine's own list (ids by position, a subgraph's included under the
        # parent activation that runs it); answered: this run's own rows
        pending = pending_interrupts(store, run_id)
        interrupts = [
            InterruptEntry(
                id=p.id,
                step=p.step,
                task_path=p.task_path,
                node=p.node,
                seq=p.seq,
                payload=p.payload,
                answered=False,
                deadline=p.deadline,
            )
            for p in pending
        ] + [
            InterruptEntry(
                id=interrupt_id(i.step, i.task_path, i.seq),
                step=i.step,
                task_path=i.task_path,
                node=_node_of(i.task_path),
                seq=i.seq,
                payload=_loads(i.payload),
                answered=True,
                answer=_loads(i.answer),
            )
            for i in store.interrupts(run_id)
            if i.seq >= 0 and i.answer is not None  # negative: bookkeeping rows
        ]
        # the parent-level activation each pending interrupt waits in
        waiting = {head_nodes.get(p.id.split("/", 1)[0].split(":")[1], p.node) for p in pending}
        names = sorted(doc.get("nodes", {}))
        nodes: list[NodeView] = []
        for n in names:
            count = int(visits.get(n, 0))
            status: Any = "ran" if count else "never_reached"
            if n in open_nodes:
                if run.status in ("running", "queued"):
                    status = "running"
                elif run.status in ("failed", "dead"):
                    status = "failed"
                elif n in waiting and run.status == "paused":
                    status = "interrupted"
                elif run.status in ("paused", "cancelled"):
                    status = "paused"
            kind = (doc["nodes"].get(n) or {}).get("kind", "node")
            nodes.append(
                NodeView(
                    name=n,
                    kind="subgraph" if kind == "subgraph" else "node",
                    visits=count,
                    status=status,
                )
            )
        activations, tokens = self.usage(run_id)
        graph = self.graphs.get(run.graph)
        mermaid = graph.to_mermaid() if graph is not None else _mermaid(doc)
        failed = run.status == "failed"
        return RunOverview(
            id=run.id,
            graph=run.graph,
            status=run.status,
            reason=None if failed else run.error,
            error=run.error if failed else None,
            head_step=run.head_step,
            created_at=run.created_at,
            updated_at=run.updated_at,
            duration_ms=self.duration_ms(run),
            activations=activations,
            tokens=tokens,
            cost_usd=self.cost(run, tokens),
            nodes=nodes,
            svg=graph_svg(doc, {v.name: (v.status, v.visits) for v in nodes}),
            mermaid=mermaid,
            interrupts=interrupts,
            links=self.links(run),
            head_tasks=sorted(head_nodes),
            actions="/" not in run.id and self.graphs.get(run.graph) is not None,
        )

    def links(self, run: RunRecord) -> list[RunLink]:
        store = self.store
        out: list[RunLink] = []
        if run.parent_id is not None:
            parent = store.find_run(run.parent_id)
            out.append(
                RunLink(
                    id=run.parent_id,
                    relation="subgraph_parent" if "/" in run.id else "fork_parent",
                    status=parent.status if parent is not None else "missing",
                    step=run.parent_step,
                )
            )
        for child in store.child_run_ids(run.id)[:MAX_LINKS]:
            row = store.find_run(child)
            step = child[len(run.id) + 1 :].split("/", 1)[0]
            out.append(
                RunLink(
                    id=child,
                    relation="subgraph",
                    status=row.status if row is not None else "missing",
                    step=int(step) if step.isdigit() else None,
                )
            )
        for fork in store.list_runs(parent_id=run.id, limit=MAX_LINKS):
            if "/" not in fork.id:
                out.append(
                    RunLink(id=fork.id, relation="fork", status=fork.status, step=fork.parent_step)
                )
        return out

    # -- timeline -------------------------------------------------------------------------

    def timeline(self, run_id: str, start: int, limit: int) -> TimelinePage:
        store = self.store
        run = store.get_run(run_id)
        stop = start + limit
        writes: list[WriteRecord] = store.writes(run_id, start, stop)
        tries: dict[tuple[int, str], int] = {}
        for a in store.attempts(run_id):
            if start <= a.step < stop:
                tries[(a.step, a.task_path)] = tries.get((a.step, a.task_path), 0) + 1
        children = set(store.child_run_ids(run_id))
        effect_counts: dict[tuple[int, str], int] = {}
        for step in sorted({w.step for w in writes}):
            for e in store.effects(run_id, step):
                key = (e.step, e.task_path)
                effect_counts[key] = effect_counts.get(key, 0) + 1
        items = []
        for w in writes:
            update = _loads(w.update, {})
            usage = _loads(w.usage, {})
            child = f"{run_id}/{w.step}/{w.task_path}"
            items.append(
                ActivationEntry(
                    step=w.step,
                    node=w.node,
                    task_path=w.task_path,
                    started_at=w.started_at,
                    finished_at=w.finished_at,
                    duration_ms=round((w.finished_at - w.started_at) * 1000, 3),
                    attempts=tries.get((w.step, w.task_path), 0) + 1,
                    tokens={str(k): int(v) for k, v in usage.items()}
                    if isinstance(usage, dict)
                    else {},
                    effects=effect_counts.get((w.step, w.task_path), 0),
                    writes=sorted(update) if isinstance(update, dict) else [],
                    child_run=child if child in children else None,
                )
            )
        head = store.latest_step(run_id)
        # the last step that has (or will have) activations: a finished run's head plans none
        last = run.head_step if head is None or _loads(head.tasks, []) else run.head_step - 1
        return TimelinePage(
            run_id=run_id,
            head_step=run.head_step,
            start=start,
            stop=min(stop, run.head_step + 1),
            items=items,
            next_start=stop if stop <= last else None,
        )

    # -- state ----------------------------------------------------------------------------

    def state(self, run_id: str, step: int) -> StateAtStep:
        store = self.store
        run = store.get_run(run_id)
        head = store.latest_step(run_id)
        last = head.step if head is not None else 0
        if step < 0 or step > last:
            raise RunStateError(f"run {run_id} has steps 0..{last}; step {step} does not exist")
        graph = self.graph_for(run) if "/" not in run_id else None
        previous = step - 1 if step > 0 else None
        if graph is not None:
            if previous is None:
                now = before = graph.state_at(run_id, step).model_dump(mode="json")
            elif run.fingerprint == graph.fingerprint:
                # one rebuild, not two: the previous state plus that step's updates, merged
                # by the graph's reducers in merge order (stored JSON needs no migration)
                schema = graph.ir.schema
                prev_state = graph.state_at(run_id, previous)
                ws = sorted(store.writes(run_id, previous, step), key=lambda w: w.seq)
                updates = [(w.node, schema.load_update(w.update)) for w in ws]
                before = prev_state.model_dump(mode="json")
                now = schema.apply(prev_state, updates, previous).model_dump(mode="json")
            else:
                now = graph.state_at(run_id, step).model_dump(mode="json")
                before = graph.state_at(run_id, previous).model_dump(mode="json")
            return StateAtStep(
                run_id=run_id,
                step=step,
                exact=True,
                snapshot_step=step,
                state=now,
                previous_step=previous,
                diff=json_diff(before, now),
            )
        snap = store.last_snapshot(run_id, step)
        if snap is None or snap.snapshot is None:
            raise RunStateError(f"run {run_id} has no snapshot at or before step {step}")
        state = _loads(snap.snapshot, {})
        pending = [
            {
                "step": w.step,
                "node": w.node,
                "task_path": w.task_path,
                "update": _loads(w.update, {}),
            }
            for w in store.writes(run_id, snap.step, step)
        ]
        diff: list[DiffItem] = []
        if previous is not None:
            # without the reducers only what the previous step's activations wrote is known
            for w in store.writes(run_id, previous, step):
                update = _loads(w.update, {})
                for k, v in update.items() if isinstance(update, dict) else ():
                    diff.append(DiffItem(path=f"{k}", op="change", after=v))
        return StateAtStep(
            run_id=run_id,
            step=step,
            exact=snap.step == step,
            snapshot_step=snap.step,
            state=state if isinstance(state, dict) else {"value": state},
            pending_updates=pending,
            previous_step=previous,
            diff=diff,
        )

    # -- effects --------------------------------------------------------------------------

    def effects(self, run_id: str, step: int, task_path: str) -> EffectsPage:
        self.store.get_run(run_id)
        items = [
            EffectEntry(
                seq=e.seq,
                name=e.name,
                kind="llm"
                if e.name == LLM_EFFECT
                else "tool"
                if e.name.startswith(TOOL_PREFIX)
                else "effect",
                request=_loads(e.request),
                response=_loads(e.response),
                created_at=e.created_at,
            )
            for e in self.store.effects(run_id, step, task_path)
        ]
        return EffectsPage(run_id=run_id, step=step, task_path=task_path, items=items)


def _mermaid(doc: dict[str, Any]) -> str:
    """Mermaid text from a stored graph document (when the graph itself is not served)."""

    def nid(n: str) -> str:
        return {START: "__start__", END: "__end__"}.get(
            n, "n_" + "".join(c if c.isalnum() or c == "_" else "_" for c in n)
        )

    lines = ["flowchart TD", '    __start__(["start"])', '    __end__(["end"])']
    for n, spec in sorted(doc.get("nodes", {}).items()):
        shape = "[[" if (spec or {}).get("kind") == "subgraph" else "["
        close = "]]" if shape == "[[" else "]"
        lines.append(f'    {nid(n)}{shape}"{n.replace(chr(34), "#quot;")}"{close}')
    for s, d in doc.get("edges", []):
        lines.append(f"    {nid(s)} --> {nid(d)}")
    for i, (sources, target) in enumerate(doc.get("joins", [])):
        lines.append(f'    join_{i}(("join"))')
        lines += [f"    {nid(s)} --> join_{i}" for s in sources]
        lines.append(f"    join_{i} --> {nid(target)}")
    for s, targets in sorted(doc.get("routers", {}).items()):
        lines += [f"    {nid(s)} -.-> {nid(t)}" for t in targets]
    return "\n".join(lines) + "\n"
