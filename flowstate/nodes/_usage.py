"""Token usage of a run, summed from the `usage` column of its committed activations.

Each committed activation stores the tokens its model calls used (`ctx.add_usage`, which
`JournaledLLM` calls for every call, including calls served from the journal after a crash).
So a run's usage is the sum over its `writes` rows: an activation that was cut short by a
crash and ran again is counted once, with all its calls. Calls made by an activation that
never committed (its node failed) are not counted.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

__all__ = ["node_usage", "run_usage"]


class _WriteRow(Protocol):
    node: str
    usage: str


class _HasWrites(Protocol):
    def writes(self, run_id: str) -> Any: ...


def _counts(raw: str) -> dict[str, int]:
    data = json.loads(raw or "{}")
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value


def run_usage(store: _HasWrites, run_id: str) -> dict[str, int]:
    """Tokens used by a run: `{"input_tokens": n, "output_tokens": m}` (plus any other key a
    node recorded), summed over its committed activations. Pass `app.store`."""
    total = {"input_tokens": 0, "output_tokens": 0}
    row: _WriteRow
    for row in store.writes(run_id):
        _add(total, _counts(row.usage))
    return total


def node_usage(store: _HasWrites, run_id: str) -> dict[str, dict[str, int]]:
    """Tokens used by each node of a run, summed over its activations, in first-run order."""
    per_node: dict[str, dict[str, int]] = {}
    row: _WriteRow
    for row in store.writes(run_id):
        counts = _counts(row.usage)
        if counts:
            _add(per_node.setdefault(row.node, {"input_tokens": 0, "output_tokens": 0}), counts)
    return per_node
