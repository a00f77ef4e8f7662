"""flowstate: durable LLM agents, planners and crews as typed graphs.

Declare a graph of typed nodes over one pydantic state; the scheduler checkpoints every
activation to SQLite, so a run can pause for a human, resume after a crash without redoing
finished work, replay offline, and fork from any step.
"""

import logging

from flowstate.checkpoints import SQLiteStore
from flowstate.engine import (
    END,
    START,
    Command,
    CompiledGraph,
    GraphBuilder,
    HistoryEntry,
    Limits,
    NodeContext,
    Overwrite,
    PendingInterrupt,
    Reducer,
    RetryPolicy,
    RunResult,
    Send,
    TimedOut,
    add,
    add_schedule,
    append,
    fire_schedules,
    merge,
    wake_due,
)
from flowstate.errors import (
    CorruptRowError,
    EditRefused,
    EditWhileRunning,
    FlowstateError,
    GraphBuildError,
    GraphMismatch,
    InputRejected,
    LeaseLost,
    NodeFailed,
    PayloadTooLarge,
    ReplayDivergence,
    RunNotFound,
    RunOwned,
    RunStateError,
    StateMutated,
    StepCloseFailed,
    StoreError,
    StoreIOError,
    ThreadBusy,
    UpdateRejected,
    WriteConflict,
)

__version__ = "0.1.0"

__all__ = [
    "END",
    "START",
    "Command",
    "CompiledGraph",
    "CorruptRowError",
    "EditRefused",
    "EditWhileRunning",
    "FlowstateError",
    "GraphBuildError",
    "GraphBuilder",
    "GraphMismatch",
    "HistoryEntry",
    "InputRejected",
    "LeaseLost",
    "Limits",
    "NodeContext",
    "NodeFailed",
    "Overwrite",
    "PayloadTooLarge",
    "PendingInterrupt",
    "Reducer",
    "ReplayDivergence",
    "RetryPolicy",
    "RunNotFound",
    "RunOwned",
    "RunResult",
    "RunStateError",
    "SQLiteStore",
    "Send",
    "StateMutated",
    "StepCloseFailed",
    "StoreError",
    "StoreIOError",
    "ThreadBusy",
    "TimedOut",
    "UpdateRejected",
    "WriteConflict",
    "add",
    "add_schedule",
    "append",
    "fire_schedules",
    "merge",
    "wake_due",
]

logging.getLogger("flowstate").addHandler(logging.NullHandler())
"""A library logs, the application decides where to: nothing reaches stderr unless logging
is configured (``logging.basicConfig``), as the logging HOWTO asks of libraries."""
