"""The engine: graph builder, validation, scheduler, node context, events."""

from flowstate.errors import RouteError

from ._app import CompiledGraph
from ._builder import GraphBuilder, GraphIR, Join
from ._context import NodeContext
from ._identity import graph_diff
from ._interrupts import UNSET, PendingInterrupt, answer_interrupts, pending_interrupts
from ._limits import Limits
from ._loading import load_target
from ._nodes import RetryPolicy, default_retry_on
from ._open import DEFAULT_DB, open_store
from ._overwrite import Overwrite
from ._results import HistoryEntry, RunResult
from ._schedules import (
    GRACE_SECONDS,
    add_schedule,
    fire_schedules,
    next_fire_time,
    pause_schedule,
    resume_schedule,
)
from ._state import Redacted, Reducer, StateSchema, add, append, merge
from ._streaming import STREAM_MODES, StreamMode, Subscription, stream_kinds
from ._thread_view import Thread, ThreadSummary, Turn
from ._threads import MultitaskStrategy
from ._timers import HOLD_SECONDS, TimedOut
from ._types import END, START, Command, NodeName, RunId, Send, Task, TaskPath
from ._validate import to_networkx
from ._waker import wake_due, wake_loop
from ._worker import Worker

__all__ = [
    "DEFAULT_DB",
    "END",
    "GRACE_SECONDS",
    "HOLD_SECONDS",
    "START",
    "STREAM_MODES",
    "UNSET",
    "Command",
    "CompiledGraph",
    "GraphBuilder",
    "GraphIR",
    "HistoryEntry",
    "Join",
    "Limits",
    "MultitaskStrategy",
    "NodeContext",
    "NodeName",
    "Overwrite",
    "PendingInterrupt",
    "Redacted",
    "Reducer",
    "RetryPolicy",
    "RouteError",
    "RunId",
    "RunResult",
    "Send",
    "StateSchema",
    "StreamMode",
    "Subscription",
    "Task",
    "TaskPath",
    "Thread",
    "ThreadSummary",
    "TimedOut",
    "Turn",
    "Worker",
    "add",
    "add_schedule",
    "answer_interrupts",
    "append",
    "default_retry_on",
    "fire_schedules",
    "graph_diff",
    "load_target",
    "merge",
    "next_fire_time",
    "open_store",
    "pause_schedule",
    "pending_interrupts",
    "resume_schedule",
    "stream_kinds",
    "to_networkx",
    "wake_due",
    "wake_loop",
]
