"""Checkpoint stores: runs, step boundaries, committed activations and the effects journal.

Stores hold JSON documents and know nothing of node code. ``SQLiteStore`` is the
embedded default; ``InMemoryStore`` keeps the records in process memory (no persistence,
for tests and benchmarks).
"""

from ._crypto import Keyring, keyring_from_env
from ._flow import FlowControl, RateLimit
from ._maintenance import DamagedRow, DoctorReport, doctor, parse_age, prune
from ._memory_store import InMemoryStore
from ._open import describe_store, is_postgres_url, open_store
from ._protocol import (
    CheckpointStore,
    CommitEntry,
    EventStore,
    GroupCommitStore,
    LeaseStore,
    NotifyStore,
    RowScanStore,
)
from ._queue import Claim, QueuedRun, RunQueue, WorkerInfo
from ._records import (
    CHECKPOINT_FORMAT,
    TERMINAL_STATUSES,
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    ThreadRecord,
    WriteRecord,
    row_hash,
)
from ._sqlite import Durability, SQLiteStore
from ._timer_records import CatchUp, ScheduleRecord, TimerStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._postgres import PostgresStore


def __getattr__(name: str) -> object:
    # PostgresStore needs psycopg (the ``postgres`` extra): imported when first asked for
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CHECKPOINT_FORMAT",
    "TERMINAL_STATUSES",
    "AttemptRecord",
    "CatchUp",
    "CheckpointStore",
    "Claim",
    "CommitEntry",
    "DamagedRow",
    "DoctorReport",
    "Durability",
    "EffectRecord",
    "EventStore",
    "FlowControl",
    "GroupCommitStore",
    "InMemoryStore",
    "InterruptRecord",
    "Keyring",
    "LeaseStore",
    "NotifyStore",
    "PostgresStore",
    "QueuedRun",
    "RateLimit",
    "RowScanStore",
    "RunQueue",
    "RunRecord",
    "RunStatus",
    "SQLiteStore",
    "ScheduleRecord",
    "StepRecord",
    "ThreadRecord",
    "TimerStore",
    "WorkerInfo",
    "WriteRecord",
    "describe_store",
    "doctor",
    "is_postgres_url",
    "keyring_from_env",
    "open_store",
    "parse_age",
    "prune",
    "row_hash",
]
