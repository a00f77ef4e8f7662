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
from ._crypto import PREFIX, SEALED_COLUMNS
from ._records import InterruptRecord, RunRecord, StepRecord, ThreadRecord, WriteRecord

__all__ = ["SQLReads"]


class SQLReads:
    """Run, step, write, interrupt and signal reads of the SQL stores; uses their
    ``_select``, ``_read``, ``_stmt`` and ``write``."""

    _select: Callable[[str, str, Sequence[Any], str], list[Any]]
    _read: Callable[..., list[Any]]
    _stmt: Callable[[str], Any]
    write: Callable[[], AbstractContextManager[Any]]
    _KID_SQL: str

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._select("runs", '"id" = ?', [run_id], "")
        if not rows:
            raise RunNotFound(run_id)
        return rows[0]

    def find_run(self, run_id: str) -> RunRecord | None:
        rows = self._select("runs", '"id" = ?', [run_id], "")
        return rows[0] if rows else None

    def thread_runs(self, thread_id: str) -> list[RunRecord]:
        return self._select("runs", '"thread_id" = ?', [thread_id], '"turn"')

    def threads(self, limit: int = 100, before: float | None = None) -> list[ThreadRecord]:
        rows = self._read(
            self._stmt(
                'SELECT "thread_id", count(*), min("created_at"), max("created_at") '
                'FROM {runs} WHERE "thread_id" IS NOT NULL GROUP BY "thread_id" '
                'HAVING max("created_at") < ? '
                'ORDER BY max("created_at") DESC, "thread_id" LIMIT ?'
            ),
            [1e308 if before is None else float(before), int(limit)],
        )
        return [
            ThreadRecord(
                thread_id=str(r[0]), turns=int(r[1]), created_at=float(r[2]), last_at=float(r[3])
            )
            for r in rows
        ]

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

    def key_ids(self) -> dict[str, int]:
        """How many sealed values each key id holds, over every sealed column (encryption
        at rest; ``flowstate doctor`` prints it): a key may leave the keyring once its
        count is 0. Reads no value and needs no key."""
        out: dict[str, int] = {}
        for table, cols in SEALED_COLUMNS.items():
            for col in cols:
                kid = self._KID_SQL.format(c=f'"{col}"')
                q = self._stmt(
                    f"SELECT {kid}, count(*) FROM {{{table}}} "
                    f'WHERE substr("{col}", 1, {len(PREFIX)}) = ? GROUP BY 1'
                )
                for k, n in self._read(q, [PREFIX]):
                    out[str(k)] = out.get(str(k), 0) + int(n)
        return dict(sorted(out.items()))
