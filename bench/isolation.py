"""What state isolation costs per activation (issue 15, item 1).

    python bench/isolation.py [--quick]

Every activation reads its own isolated input (flowstate/engine/_isolation.py): creating
it, then checking after the node returns that nothing was changed in place. This script
times exactly what the engine runs per activation — ``isolate(...)``, the node's field
reads, ``mutations(...)`` — for a 10-field state and for a large state (1,000 fields, one
of them a 100,000-item list), touching no field, one small list, or every field; and, for
comparison, the two mechanisms that were rejected: a deep copy of the whole state per
activation, and a JSON fingerprint of the whole state before and after.

Runs with the project's interpreter; no peers needed. Prints a markdown table (µs per
activation, median of 5 repetitions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pydantic_core
from pydantic import BaseModel, create_model

from flowstate.engine._isolation import isolate, mutations


def _small_state() -> BaseModel:
    fields: dict[str, Any] = {f"n{i}": (int, i) for i in range(5)}
    fields |= {f"s{i}": (str, "x" * 20) for i in range(3)}
    fields["items"] = (list[str], [f"item{i}" for i in range(10)])
    fields["bag"] = (dict[str, int], {f"k{i}": i for i in range(10)})
    return create_model("Small", **fields)()


def _large_state() -> BaseModel:
    fields: dict[str, Any] = {f"n{i}": (int, i) for i in range(996)}
    fields["items"] = (list[str], [f"item{i}" for i in range(10)])
    fields["bag"] = (dict[str, int], {f"k{i}": i for i in range(10)})
    fields["history"] = (list[str], [f"event {i}" for i in range(100_000)])
    fields["doc"] = (dict[str, str], {f"p{i}": "text" * 10 for i in range(10_000)})
    return create_model("Large", **fields)()


def _time(fn: Any, n: int) -> float:
    reps = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        reps.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(reps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_small = 2_000 if args.quick else 20_000
    n_large = 20 if args.quick else 100
    rows: list[tuple[str, str, float]] = []
    for label, state, n in (
        ("10 fields", _small_state(), n_small),
        ("1,000 fields + 100k-item list", _large_state(), n_large),
    ):
        model = type(state)
        names = list(model.model_fields)

        def none(state: BaseModel = state, model: type[BaseModel] = model) -> None:
            inst = isolate(model, state)
            assert not mutations(inst, state)

        def one(state: BaseModel = state, model: type[BaseModel] = model) -> None:
            inst = isolate(model, state)
            _ = inst.items  # type: ignore[attr-defined]
            assert not mutations(inst, state)

        def scalars(
            state: BaseModel = state, model: type[BaseModel] = model, names: list[str] = names
        ) -> None:
            inst = isolate(model, state)
            for f in names[:5]:
                getattr(inst, f)
            assert not mutations(inst, state)

        def deep(state: BaseModel = state) -> None:
            state.model_copy(deep=True)

        def fingerprint(state: BaseModel = state) -> None:
            a = pydantic_core.to_json(state)
            assert a == pydantic_core.to_json(state)

        rows += [
            (label, "isolate + check, node reads nothing", _time(none, n)),
            (label, "isolate + check, node reads 5 scalars", _time(scalars, n)),
            (label, "isolate + check, node reads one 10-item list", _time(one, n)),
            (label, "rejected: deep copy of the whole state", _time(deep, max(5, n // 10))),
            (label, "rejected: JSON fingerprint before and after", _time(fingerprint, n)),
        ]
    print("| state | per activation | µs |")
    print("|---|---|---:|")
    for label, what, us in rows:
        print(f"| {label} | {what} | {us:,.1f} |")


if __name__ == "__main__":
    main()
