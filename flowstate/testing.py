"""Testing helpers for users' graphs: crash everywhere, replay offline, generate inputs.

```python
from flowstate.testing import assert_resumable, assert_replays

def test_my_graph_survives_crashes():
    assert_resumable(my_app, {"question": "..."})
```
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flowstate import _crashpoints
from flowstate._crashpoints import effect_observers
from flowstate.checkpoints import SQLiteStore
from flowstate.engine import CompiledGraph

__all__ = [
    "ResumeReport",
    "SimulatedCrash",
    "assert_replays",
    "assert_resumable",
    "crash_points",
    "inputs",
]


class SimulatedCrash(BaseException):
    """The process "dies" at a crash point: a BaseException, so nothing records it."""


@dataclass
class ResumeReport:
    crash_points: int
    """How many crash points were tried (each one a crash + resume)."""
    points_reached: set[str]
    effects: int
    """Effects performed by the uninterrupted run."""
    duplicate_effects: int
    """Effects performed again after a crash (only ones in flight at the crash)."""


def _writes(db: Path, run_id: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as c:
        return c.execute(
            'SELECT step, task_path, node, "update", goto FROM writes WHERE run_id = ? '
            "ORDER BY step, seq",
            [run_id],
        ).fetchall()


def assert_resumable(
    app: CompiledGraph[Any],
    input: BaseModel | dict[str, Any],
    *,
    max_points: int = 500,
    value: Callable[[Any], Any] | None = None,
    workdir: str | Path | None = None,
) -> ResumeReport:
    """Crash the run at every activation boundary and inside every effect, resume it in a
    fresh store handle, and check it against an uninterrupted run: same final state, same
    committed updates, and no effect performed twice except one in flight at the crash.

    ``value`` answers interrupts: called with each pending interrupt's payload, returns
    its answer.
    Node code must be deterministic given its input and its effects' results. ``workdir``
    is where the scratch databases go (default: a new temporary directory).
    """
    tmp = Path(tempfile.mkdtemp(prefix="flowstate-resumable-", dir=workdir))
    performed: Counter[tuple[str, int, str, int]] = Counter()

    def observe(run_id: str, step: int, path: str, seq: int, name: str) -> None:
        performed[(run_id, step, path, seq)] += 1

    def drive(a: CompiledGraph[Any], resume: bool) -> Any:
        async def go() -> Any:
            r = await (a.resume("r") if resume else a.run(input, run_id="r"))
            while r.status == "paused" and r.interrupts and value is not None:
                answers = {i.id: value(i.payload) for i in r.interrupts}
                r = await a.resume("r", answers=answers)
            return r

        return asyncio.run(go())

    effect_observers.append(observe)
    try:
        gold_store = SQLiteStore(tmp / "golden.db")
        golden = drive(app.bind(gold_store), False)
        gold_writes = _writes(tmp / "golden.db", "r")
        gold_effects = sum(performed.values())
        gold_store.close()
        reached: set[str] = set()
        dup_total = 0
        k = 0
        for k in range(1, max_points + 1):
            performed.clear()
            db = tmp / f"k{k}.db"
            count = 0
            started = 0

            def hook(name: str, k: int = k) -> None:
                nonlocal count, started
                count += 1
                reached.add(name)
                if name == "effect.before_call":
                    started += 1
                if count >= k:
                    raise SimulatedCrash(name)

            store = SQLiteStore(db)
            _crashpoints.set_hook(hook)
            crashed = False
            try:
                drive(app.bind(store), False)
            except SimulatedCrash:
                crashed = True
            finally:
                _crashpoints.set_hook(None)
                store.conn.close()
            if not crashed:
                break
            with sqlite3.connect(db) as c:
                has_run = c.execute("SELECT count(*) FROM runs").fetchone()[0]
                journaled = c.execute("SELECT count(*) FROM effects").fetchone()[0]
            in_flight = max(0, started - journaled)
            store = SQLiteStore(db)
            try:
                result = drive(app.bind(store), bool(has_run))
            finally:
                store.close()
            assert result.status == golden.status, (
                f"crash point {k}: resumed run ended {result.status}, uninterrupted {golden.status}"
            )
            assert result.state == golden.state, (
                f"crash point {k}: resumed state differs from the uninterrupted run:\n"
                f"  resumed:       {result.state!r}\n  uninterrupted: {golden.state!r}"
            )
            got = _writes(db, "r")
            assert got == gold_writes, f"crash point {k}: committed updates differ"
            dups = sum(n - 1 for n in performed.values() if n > 1)
            assert dups <= in_flight, (
                f"crash point {k}: {dups} effects performed twice, but only {in_flight} were "
                "in flight at the crash"
            )
            dup_total += dups
        else:
            raise AssertionError(f"the run still crashed after {max_points} crash points")
        return ResumeReport(k - 1, reached, gold_effects, dup_total)
    finally:
        effect_observers.remove(observe)
        shutil.rmtree(tmp, ignore_errors=True)


def assert_replays(app: CompiledGraph[Any], run_id: str) -> Any:
    """Replay a recorded run offline and fail with the first divergence, if any."""
    report = asyncio.run(app.replay(run_id, raise_on_divergence=False))
    if not report.identical:
        d = report.first_divergence
        raise AssertionError(
            report.summary() + (f"\n  fields: {json.dumps(d.fields)}" if d and d.fields else "")
        )
    return report


def crash_points(max_point: int = 200) -> Any:
    """Hypothesis strategy: a crash point number (1-based) for FLOWSTATE_CRASH_AT or hooks."""
    from hypothesis import strategies as st

    return st.integers(min_value=1, max_value=max_point)


def inputs(model: type[BaseModel], **overrides: Any) -> Any:
    """Hypothesis strategy of valid inputs for a state model (fields with defaults may be
    omitted; pass strategies as keyword arguments to fix some fields)."""
    from hypothesis import strategies as st

    return st.builds(model, **overrides)
