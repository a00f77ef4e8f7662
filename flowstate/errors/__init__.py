"""Every error flowstate raises, in one small tree that separates blame.

```
FlowstateError                 base of everything below; has a stable ``code``
├── GraphBuildError            your graph: raised by ``compile()``, lists every problem
├── NodeFailed                 your node code raised; ``.run_id .step .node``, ``__cause__``
│   └── StepCloseFailed        a step's activations all committed but merging them failed
├── UpdateRejected             a node returned fields or types the state refuses
├── InputRejected              a run's input does not fit the state model
├── PayloadTooLarge            an update, effect result or state exceeds its byte limit
├── WriteConflict              two activations of one step wrote a field that has no reducer
├── StateMutated               a node changed its input state in place instead of returning it
├── GraphMismatch              resume/fork with a graph that differs from the recorded one
├── ReplayDivergence           replay produced a different update than the recorded run
├── RunNotFound                no run with that id in the store
│   └── ThreadNotFound         no thread with that id in the store
├── RunStateError              the run is not in a state that allows the operation
│   ├── RunOwned               another live process is executing the run
│   ├── LeaseLost              this process lost the run to another (its commit was fenced)
│   ├── CancelledElsewhere     a cancel was acknowledged in another process (commit refused)
│   ├── EditRefused            an edit (update_state, resume update/goto) cannot apply there
│   │   └── EditWhileRunning   the run to edit is being executed (a live lease)
│   ├── ThreadBusy             new input while the thread's last turn is running, paused or failed
│   ├── TurnConflict           another caller started that turn of the thread first
│   └── TurnNotReady           a queued turn whose previous turn has not finished
├── EffectError                an effect's arguments or result cannot be journaled
├── TimerError                 a sleep, deadline or time argument that is not a time
├── ScheduleError              a schedule's cron, zone, policy, input or graph is unusable
│   └── ScheduleNotFound       no schedule with that name in the store
├── StoreError                 storage, not your code
│   ├── CorruptRowError        a stored row failed its hash or schema check
│   └── StoreIOError           the database reported an I/O or locking failure
└── CLIError                   the command line was given something it cannot use
    ├── GraphLoadError         module:attr does not name a graph (or registry) to load
    └── DatabaseNotFound       no checkpoint database where the command looked
```

Each message says what happened, to which named thing, and what to do. The code
(``FS1xx`` for graphs, ``FS2xx`` for runs, ``FS3xx`` for storage, ``FS4xx`` for the
command line) is stable and documented in docs/reference/errors.md.
"""

from __future__ import annotations

from ._base import (
    RESUME_GRAPH_PLACEHOLDER as RESUME_GRAPH_PLACEHOLDER,
)
from ._base import (
    ConfigError,
    FlowstateError,
    GraphBuildError,
    TargetError,
)
from ._base import (
    resume_hint as resume_hint,
)
from ._cli import (
    CLIError,
    DatabaseNotFound,
    GraphLoadError,
    NoWorkerGraphs,
    QueueUnavailable,
)
from ._nodes import (
    EffectDivergence,
    GraphMismatch,
    InputRejected,
    NodeFailed,
    PayloadTooLarge,
    ReplayDivergence,
    RouteError,
    StateMutated,
    StepCloseFailed,
    UpdateRejected,
    WriteConflict,
)
from ._runs import (
    CancelledElsewhere,
    EditRefused,
    EditWhileRunning,
    EffectError,
    LeaseLost,
    RunNotFound,
    RunOwned,
    RunStateError,
    ThreadBusy,
    ThreadNotFound,
    TurnConflict,
    TurnNotReady,
)
from ._storage import (
    CorruptRowError,
    DecryptionFailed,
    EncryptionError,
    EncryptionRequired,
    KeyMissing,
    StoreError,
    StoreIOError,
)
from ._time import (
    ScheduleError,
    ScheduleNotFound,
    TimerError,
)

__all__ = [
    "CLIError",
    "CancelledElsewhere",
    "ConfigError",
    "CorruptRowError",
    "DatabaseNotFound",
    "DecryptionFailed",
    "EditRefused",
    "EditWhileRunning",
    "EffectDivergence",
    "EffectError",
    "EncryptionError",
    "EncryptionRequired",
    "FlowstateError",
    "GraphBuildError",
    "GraphLoadError",
    "GraphMismatch",
    "InputRejected",
    "KeyMissing",
    "LeaseLost",
    "NoWorkerGraphs",
    "NodeFailed",
    "PayloadTooLarge",
    "QueueUnavailable",
    "ReplayDivergence",
    "RouteError",
    "RunNotFound",
    "RunOwned",
    "RunStateError",
    "ScheduleError",
    "ScheduleNotFound",
    "StateMutated",
    "StepCloseFailed",
    "StoreError",
    "StoreIOError",
    "TargetError",
    "ThreadBusy",
    "ThreadNotFound",
    "TimerError",
    "TurnConflict",
    "TurnNotReady",
    "UpdateRejected",
    "WriteConflict",
]

for _name in __all__:  # shown, pickled and documented as flowstate.errors.X
    globals()[_name].__module__ = __name__
del _name
