"""Where an activation's recorded effects and interrupt answers come from when they are not
in the run's own journal: the recording (replay) or the parent run (fork)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowstate.checkpoints import CheckpointStore, EffectRecord, WriteRecord

from ._edit import is_edit

__all__ = ["JournalSource"]


@dataclass
class JournalSource:
    """Where recorded effects come from when they are not in the run's own journal.

    Replay reads the recorded run (``strict``: a missing or different effect is a
    divergence, and nothing is ever performed live). Fork with ``reuse_effects`` reads the
    parent run at an offset (not strict: a request that differs runs live).
    """

    store: CheckpointStore
    """The store holding the recording (replay) or the parent run (fork)."""
    strict: bool
    step_offset: int = 0
    run_map: Callable[[str], str] = lambda r: r
    check: Callable[[str, WriteRecord, dict[str, Any]], None] | None = None
    """Replay: compare a new write with the recorded one (raises on divergence)."""

    def effects(self, run_id: str, step: int, path: str) -> dict[int, EffectRecord]:
        return {
            e.seq: e
            for e in self.store.effects(self.run_map(run_id), step + self.step_offset, path)
        }

    def edits(self, run_id: str, step: int) -> list[WriteRecord]:
        """The edits (``update_state``) recorded in ``step``, in the order they were made."""
        s = step + self.step_offset
        rows = [w for w in self.store.writes(self.run_map(run_id), s, s + 1) if is_edit(w)]
        return sorted(rows, key=lambda w: w.seq)

    def answers(self, run_id: str, step: int, path: str) -> dict[int, str]:
        return {
            i.seq: i.answer
            for i in self.store.interrupts(self.run_map(run_id), step + self.step_offset)
            if i.task_path == path and i.answer is not None and i.seq >= 0
        }
