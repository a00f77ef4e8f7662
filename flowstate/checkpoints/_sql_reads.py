"""The reads of ``SQLiteStore`` and ``PostgresStore``, written once.

Conditions use ``?`` parameters and quoted identifiers; each store's ``_select`` and
``_stmt`` render them in its dialect, check every row's integrity hash and validate it
into its record (``_common.decode_row``). Orders are the contract's, on both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from flowstate.errors import RunNotFound

from ._common import NO_STOP, sum_usage
from ._records import InterruptRecord, RunRecord, StepRecord, WriteRecord

__all__ = ["SQLReads"]


class SQLReads:
    """Run, step, write, interrupt and signal reads of the SQL stores; uses their
    ``_select``, ``_read``, ``_stmt`` and ``write``."""

    _select: Callable[[str, str, Sequence[Any], str], list[Any]]
    _read: Callable[..., list[Any]]
    _stmt: Callable[[str], Any]
    write: Callable[[], AbstractContextManager[Any]]

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._select("runs", '"id" = ?', [run_id], "")
        if not rows:
            raise RunNotFound(run_id)
        return rows[0]

    def find_run(self, run_id: str) -> RunRecord | None:
        rows = self._select("runs", '"id" = ?', [run_id], "")
        return rows[0] if rows else None

    def get_step(self, run_id: str, step: int) -> StepRecord | None:
        rows = self._select("steps", '"run_id" = ? AND "step" = ?', [run_id, step], "")
        return rows[0] if rows else None

    def latest_step(self, run_id: str) -> StepRecord | None:
        rows = self._select("steps", '"run_id" = ? ORDER BY "step" DESC LIMIT 1', [run_id], "")
        return rows[0] if rows else None

    def last_snapshot(self, run_id: str, at_or_before: int) -> StepRecord | None:
        rows = self._select(
            "steps",
            '"run_id" = ? AND "step" <= ? AND "snapshot" IS NOT NULL ORDER BY "step" DESC LIMIT 1',
            [run_id, at_or_before],
            "",
        )
        return rows[0] if rows else None

    def steps(self, run_id: str, start: int = 0, stop: int | None = None) -> list[StepRecord]:
        hi = stop if stop is not None else NO_STOP
        return self._select(
            "steps", '"run_id" = ? AND "step" >= ? AND "step" < ?', [run_id, start, hi], '"step"'
        )

    def writes(self, run_id: str, start: int = 0, stop: int | None = None) -> list[WriteRecord]:
        hi = stop if stop is not None else NO_STOP
        return self._select(
            "writes",
            '"run_id" = ? AND "step" >= ? AND "step" < ?',
            [run_id, start, hi],
            '"step", "seq", "task_path"',
        )

    def interrupts(self, run_id: str, step: int | None = None) -> list[InterruptRecord]:
        if step is None:
            return self._select(
                "interrupts", '"run_id" = ?', [run_id], '"step", "task_path", "seq"'
            )
        return self._select(
            "interrupts", '"run_id" = ? AND "step" = ?', [run_id, step], '"task_path", "seq"'
        )

    def signals(self, run_id: str) -> set[str]:
        rows = self._read(self._stmt('SELECT "kind" FROM {signals} WHERE "run_id" = ?'), [run_id])
        return {str(r[0]) for r in rows}

    def clear_signals(self, run_id: str) -> None:
        with self.write() as c:
            c.execute(self._stmt('DELETE FROM {signals} WHERE "run_id" = ?'), [run_id])

    def visit_counts(self, run_id: str) -> dict[str, int]:
        rows = self._read(
            self._stmt('SELECT "node", count(*) FROM {writes} WHERE "run_id" = ? GROUP BY "node"'),
            [run_id],
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def usage_totals(self, run_id: str) -> tuple[int, dict[str, int]]:
        """(committed activations, summed token usage) of the run, without decoding its
        write rows: a 10,000-step run answers in milliseconds."""
        count = self._stmt('SELECT count(*) FROM {writes} WHERE "run_id" = ?')
        (n,) = self._read(count, [run_id])[0]
        raws = self._read(
            self._stmt(
                'SELECT "usage" FROM {writes} '
                'WHERE "run_id" = ? AND "usage" IS NOT NULL AND "usage" <> ?'
            ),
            [run_id, "{}"],
        )
        return int(n), sum_usage(str(r[0]) for r in raws)
