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
from ._results import HistoryEntry, RunResult
from ._state import Reducer, StateSchema, add, append, merge
from ._types import END, START, Command, NodeName, RunId, Send, Task, TaskPath
from ._validate import to_networkx
from ._worker import Worker

__all__ = [
    "DEFAULT_DB",
    "END",
    "START",
    "UNSET",
    "Command",
    "CompiledGraph",
    "GraphBuilder",
    "GraphIR",
    "HistoryEntry",
    "Join",
    "Limits",
    "NodeContext",
    "NodeName",
    "PendingInterrupt",
    "Reducer",
    "RetryPolicy",
    "RouteError",
    "RunId",
    "RunResult",
    "Send",
    "StateSchema",
    "Task",
    "TaskPath",
    "Worker",
    "add",
    "answer_interrupts",
    "append",
    "default_retry_on",
    "graph_diff",
    "load_target",
    "merge",
    "open_store",
    "pending_interrupts",
    "to_networkx",
]
