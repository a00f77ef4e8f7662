"""Token usage and cost of a run, summed from the `usage` column of its committed activations.

Each committed activation stores the tokens its model calls used (`ctx.add_usage`, which
`JournaledLLM` calls for every call, including calls served from the journal after a crash).
So a run's usage is the sum over its `writes` rows: an activation that was cut short by a
crash and ran again is counted once, with all its calls. Calls made by an activation that
never committed (its node failed) are not counted.

`JournaledLLM` records each count twice: as a total (`input_tokens`) and per model
(`input_tokens@claude-sonnet-4-5`), so `usage_report` can price every model at its own rate
from a price table (`flowstate.llm.DEFAULT_PRICES`, or yours). Subgraph activations are child
runs (`<run>/<step>/<task>`); the report walks them, so a run's total covers its whole tree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from flowstate.llm import DEFAULT_PRICES, ModelPrice, price_of, split_usage, usage_cost

__all__ = ["UsageLine", "UsageReport", "node_usage", "run_usage", "usage_report"]

_CACHE_KEYS = ("cache_creation_input_tokens", "cache_read_input_tokens")


class _WriteRow(Protocol):
    node: str
    usage: str


class _HasWrites(Protocol):
    def writes(self, run_id: str) -> Any: ...


def _counts(raw: str) -> dict[str, int]:
    data = json.loads(raw or "{}")
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _add(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value


def _totals(counts: Mapping[str, int]) -> dict[str, int]:
    """Input and output tokens, plus cache counts when there are any; no per-model keys."""
    totals, _ = split_usage(counts)
    out = {
        "input_tokens": totals.pop("input_tokens", 0),
        "output_tokens": totals.pop("output_tokens", 0),
    }
    out.update({k: v for k, v in totals.items() if v})
    return out


def run_usage(store: _HasWrites, run_id: str) -> dict[str, int]:
    """Tokens used by a run: `{"input_tokens": n, "output_tokens": m}`, plus the cache counts
    (`cache_creation_input_tokens`, `cache_read_input_tokens`) when there were any, summed over
    its committed activations (not its child runs: see `usage_report`). Pass `app.store`."""
    total: dict[str, int] = {}
    row: _WriteRow
    for row in store.writes(run_id):
        _add(total, _counts(row.usage))
    return _totals(total)


def node_usage(store: _HasWrites, run_id: str) -> dict[str, dict[str, int]]:
    """Tokens used by each node of a run, summed over its activations, in first-run order."""
    per_node: dict[str, dict[str, int]] = {}
    row: _WriteRow
    for row in store.writes(run_id):
        counts = _counts(row.usage)
        if counts:
            _add(per_node.setdefault(row.node, {}), counts)
    return {node: _totals(counts) for node, counts in per_node.items()}


class UsageLine(BaseModel):
    """Tokens and cost of one node (or of a whole run)."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    """Uncached prompt tokens."""
    output_tokens: int = 0
    """Generated tokens (thinking included)."""
    cache_creation_input_tokens: int = 0
    """Prompt tokens written to the prompt cache."""
    cache_read_input_tokens: int = 0
    """Prompt tokens read from the prompt cache."""
    cost_usd: float = 0.0
    """What those tokens cost, priced per model from the report's price table."""
    unpriced_models: list[str] = Field(default_factory=list)
    """Models that had no entry in the price table (their tokens cost 0 here)."""

    @property
    def tokens(self) -> int:
        """All tokens, prompt (cached or not) and output."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


class UsageReport(BaseModel):
    """`usage_report`: per node (child-run nodes as `parent_node/child_node`) and in total."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    """The run the report is about (its child runs are included)."""
    total: UsageLine
    """The whole run tree."""
    nodes: dict[str, UsageLine]
    """Per node path, in first-run order."""
    models: dict[str, UsageLine]
    """Per model."""


def _line(counts: Mapping[str, int], prices: Mapping[str, ModelPrice]) -> UsageLine:
    totals, per_model = split_usage(counts)
    unpriced = sorted(m for m in per_model if price_of(m, prices) is None)
    return UsageLine(
        input_tokens=totals.get("input_tokens", 0),
        output_tokens=totals.get("output_tokens", 0),
        cache_creation_input_tokens=totals.get(_CACHE_KEYS[0], 0),
        cache_read_input_tokens=totals.get(_CACHE_KEYS[1], 0),
        cost_usd=usage_cost(counts, prices),
        unpriced_models=unpriced,
    )


def _child_runs(store: Any, run_id: str) -> list[str]:
    lister = getattr(store, "child_run_ids", None)
    return list(lister(run_id)) if lister is not None else []


def usage_report(
    store: _HasWrites, run_id: str, *, prices: Mapping[str, ModelPrice] | None = None
) -> UsageReport:
    """Tokens and cost of a run and all its child runs (subgraphs), per node and per model.

    `prices` is a price table (model name -> `ModelPrice`); default `DEFAULT_PRICES`. A node
    of a child run is reported under `<parent node>/<child node>`, as a breakdown: the line of
    the subgraph node itself already counts its child run (as its committed usage does), so
    the total is the sum of the top-level lines.
    """
    table = DEFAULT_PRICES if prices is None else prices
    per_node: dict[str, dict[str, int]] = {}
    total: dict[str, int] = {}

    def walk(rid: str, prefix: str) -> None:
        row: Any
        children = set(_child_runs(store, rid))
        for row in store.writes(rid):
            counts = _counts(row.usage)
            if counts:
                _add(per_node.setdefault(prefix + row.node, {}), counts)
                if not prefix:  # a subgraph activation's usage already counts its child run
                    _add(total, counts)
            child = f"{rid}/{row.step}/{row.task_path}"
            if child in children:
                walk(child, f"{prefix}{row.node}/")

    walk(run_id, "")
    _, per_model = split_usage(total)
    return UsageReport(
        run_id=run_id,
        total=_line(total, table),
        nodes={node: _line(counts, table) for node, counts in per_node.items()},
        models={
            model: _line({f"{k}@{model}": v for k, v in counts.items()} | counts, table)
            for model, counts in per_model.items()
        },
    )
