"""Checkpoint stores: runs, step boundaries, committed activations and the effects journal.

Stores hold JSON documents and know nothing of node code. ``SQLiteStore`` is the
embedded default; ``InMemoryStore`` keeps the records in process memory (no persistence,
for tests and benchmarks).
"""

from ._maintenance import DamagedRow, DoctorReport, doctor, parse_age, prune
from ._memory_store import InMemoryStore
from ._open import describe_store, is_postgres_url, open_store
from ._records import (
    CHECKPOINT_FORMAT,
    TERMINAL_STATUSES,
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    WriteRecord,
    row_hash,
)
from ._sqlite import Durability, SQLiteStore

__all__ = [
    "CHECKPOINT_FORMAT",
    "TERMINAL_STATUSES",
    "AttemptRecord",
    "DamagedRow",
    "DoctorReport",
    "Durability",
    "EffectRecord",
    "InMemoryStore",
    "InterruptRecord",
    "RunRecord",
    "RunStatus",
    "SQLiteStore",
    "StepRecord",
    "WriteRecord",
    "describe_store",
    "doctor",
    "is_postgres_url",
    "open_store",
    "parse_age",
    "prune",
    "row_hash",
]
