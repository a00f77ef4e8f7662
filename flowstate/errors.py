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

from typing import Any

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


RESUME_GRAPH_PLACEHOLDER = "--graph MODULE:ATTR"
"""Stands for the graph in a resume hint; the CLI replaces it with the ``--graph`` (and
``--db``) it was given, so its hint is a command that works as printed."""


def resume_hint(run_id: str) -> str:
    """How to continue run ``run_id``, from the shell and from Python."""
    return (
        f"`flowstate resume {run_id} {RESUME_GRAPH_PLACEHOLDER}` (Python: `app.resume({run_id!r})`)"
    )


class FlowstateError(Exception):
    """Base class of every flowstate error."""

    code: str = "FS000"
    """Stable code, documented in the error table (``FS1xx`` graphs, ``FS2xx`` runs, ``FS3xx``
    storage)."""

    retryable: bool = False
    """Whether trying the same thing again may succeed (a transient fault, not a bug): the
    default retry policy retries exactly the errors that say so."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message


class GraphBuildError(FlowstateError):
    """The graph is invalid. ``problems`` lists every problem found, each with its fix."""

    code = "FS101"

    def __init__(self, graph: str, problems: list[str]) -> None:
        self.graph = graph
        self.problems = list(problems)
        n = len(problems)
        lines = "\n".join(f"  ({i}) {p}" for i, p in enumerate(problems, 1))
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in graph '{graph}':\n{lines}")


class TargetError(FlowstateError, ValueError):
    """A ``module:attr`` target cannot be imported or lacks the attribute."""

    code = "FS102"


class ConfigError(FlowstateError, ValueError):
    """A setting or argument is invalid (a durability, a schema name, a run field); the
    message names it and the values it may take. Also a ``ValueError``."""

    code = "FS103"


class NodeFailed(FlowstateError):
    """A node raised. The original exception is ``__cause__``."""

    code = "FS201"

    def __init__(self, run_id: str, step: int, node: str, detail: str) -> None:
        self.run_id = run_id
        self.step = step
        self.node = node
        super().__init__(
            f"node '{node}' failed in run {run_id} at step {step}: {detail}. "
            f"Fix the node, then {resume_hint(run_id)} continues from the last committed "
            "activation."
        )


class UpdateRejected(FlowstateError):
    """A node's update does not fit the state model. Nothing was committed."""

    code = "FS202"

    def __init__(self, node: str, field: str | None, detail: str) -> None:
        self.node = node
        self.field = field
        where = f"field '{field}'" if field else "update"
        super().__init__(f"node '{node}' returned an invalid {where}: {detail}")


class InputRejected(FlowstateError):
    """A run's input does not fit the state model. No run was created."""

    code = "FS210"


class PayloadTooLarge(FlowstateError):
    """An update, effect result or state exceeds its byte limit. Never retried; nothing
    was written."""

    code = "FS211"

    def __init__(self, what: str, size: int, limit: int, setting: str) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size:,} bytes, over the limit of {limit:,} (Limits.{setting}); "
            "store large values elsewhere and keep a reference in the state, or raise "
            f"the limit: compile(limits=Limits({setting}=...))"
        )


class WriteConflict(FlowstateError):
    """Two activations in one step wrote the same field, which has no reducer."""

    code = "FS203"

    def __init__(self, step: int, field: str, nodes: list[str]) -> None:
        self.step = step
        self.field = field
        self.nodes = nodes
        super().__init__(
            f"nodes {', '.join(repr(n) for n in nodes)} all wrote '{field}' in step {step}, "
            f"and '{field}' has no reducer, so one write would be silently lost. Declare a "
            f"reducer, e.g. `{field}: Annotated[list[...], append]`, or write different fields."
        )


class StateMutated(FlowstateError):
    """A node changed fields of its input in place (or assigned them) without returning
    them. Its input was its own copy, so nothing leaked; the change is refused because it
    would otherwise be lost without a word."""

    code = "FS220"

    def __init__(self, node: str, fields: list[str]) -> None:
        self.node = node
        self.fields = list(fields)
        names = ", ".join(repr(f) for f in fields)
        ret = ", ".join(f"'{f}': [...]" for f in fields)
        super().__init__(
            f"node '{node}' mutated {names} in place: return {{{ret}}} instead (a node's "
            "input is read-only; only what it returns reaches the state)"
        )


class GraphMismatch(FlowstateError):
    """The graph differs from the one the run was recorded with."""

    code = "FS204"

    def __init__(self, run_id: str, diff: list[str]) -> None:
        self.run_id = run_id
        self.diff = diff
        body = "\n".join(f"  {d}" for d in diff)
        super().__init__(
            f"run {run_id} was recorded with a different graph:\n{body}\n"
            "Pass `allow_graph_change=True` (CLI: --allow-graph-change) if the change is "
            "compatible with the recorded steps."
        )


class ReplayDivergence(FlowstateError):
    """Replay produced a different result from the recorded run."""

    code = "FS205"

    def __init__(self, run_id: str, summary: str, report: Any = None) -> None:
        self.run_id = run_id
        self.report = report
        """The ``ReplayReport`` (its ``first_divergence`` says where)."""
        super().__init__(f"replay of run {run_id} diverged: {summary}")


class RouteError(FlowstateError):
    """A router raised, or returned a target it did not declare."""

    code = "FS209"

    def __init__(self, source: str, router: str, detail: str) -> None:
        self.source = source
        self.router = router
        self.detail = detail
        self.run_id: str | None = None
        self.step: int | None = None
        super().__init__(f"router '{router}' after '{source}' {detail}")

    def in_run(self, run_id: str, step: int) -> RouteError:
        """The same error, saying which run failed where and how to continue it. The
        router is to blame, not the node before it (whose update was committed)."""
        err = RouteError(
            self.source,
            self.router,
            f"{self.detail}. Run {run_id} failed at step {step}; fix the router, then "
            f"{resume_hint(run_id)} continues",
        )
        err.run_id, err.step = run_id, step
        err.__cause__ = self.__cause__
        return err


class EffectDivergence(FlowstateError):
    """Replay met an effect request that differs from the journal (or is not in it).
    ``recorded`` is the journal's ``EffectRecord`` (None when there is none)."""

    code = "FS215"

    def __init__(self, seq: int, name: str, recorded: Any, request: str) -> None:
        self.seq = seq
        self.name = name
        self.recorded = recorded
        self.request = request
        was = f"recorded {recorded.name} {recorded.request}" if recorded else "nothing recorded"
        super().__init__(f"effect #{seq} '{name}' requested {request}, {was}")


class StepCloseFailed(NodeFailed):
    """Every activation of a step committed, but closing the step failed: merging the
    updates (a ``WriteConflict`` between two activations, a custom reducer refusing) or
    a limit on the merged state. The committed activations are kept and the run stays
    ``failed``. ``way_out`` says which recovery applies: ``"resume"`` (fix the reducer
    or raise the limit, then ``resume(run_id)`` re-attempts the close with the same
    committed updates) or ``"rerun_step"`` (fix the node, then
    ``resume(run_id, rerun_step=True)`` runs the step's activations again). Setting the
    step's outcome directly (``app.update_state(run_id, values, as_node=NODE)``) is the
    third way out. The original error is
    ``__cause__``."""

    code = "FS216"

    def __init__(self, run_id: str, step: int, node: str, cause: BaseException) -> None:
        self.run_id = run_id
        self.step = step
        self.node = node
        detail = cause.message if isinstance(cause, FlowstateError) else repr(cause)
        detail = detail.rstrip(".")
        cli = f"flowstate resume {run_id} {RESUME_GRAPH_PLACEHOLDER}"
        rerun = (
            f"`{cli} --rerun-step` (Python: `app.resume({run_id!r}, rerun_step=True)`) runs "
            f"step {step}'s activations again (the superseded writes are kept as attempts)"
        )
        state = (
            f"or set the step's outcome yourself: `app.update_state({run_id!r}, values, "
            "as_node=NODE)` (the run continues from NODE's edges)"
        )
        if isinstance(cause, WriteConflict):
            self.way_out = "rerun_step"
            advice = (
                f"Fix the nodes so they write different fields, then {rerun}; or declare a "
                f"reducer for '{cause.field}' and resume (with --allow-graph-change: the "
                f"state model changed), which merges the committed updates again; {state}"
            )
        elif isinstance(cause, UpdateRejected):
            self.way_out = "resume"
            advice = (
                f"Fix the reducer, then `{cli}` (Python: `app.resume({run_id!r})`) "
                "re-attempts the close with the committed updates; if an update itself is "
                f"wrong, fix its node, then {rerun}; {state}"
            )
        elif isinstance(cause, PayloadTooLarge):
            self.way_out = "resume"
            advice = (
                f"Raise the limit: `app.resume({run_id!r}, limits=Limits(...))` re-attempts "
                f"the close; or make the nodes return less, then {rerun}; {state}"
            )
        else:
            self.way_out = "rerun_step"
            advice = f"Fix the cause, then {rerun}; {state}"
        FlowstateError.__init__(
            self,
            f"step {step} of run {run_id} could not close after all its activations "
            f"committed (last: node '{node}'): {detail}. The committed activations are kept "
            f"and the run is failed. {advice}",
        )


class RunNotFound(FlowstateError):
    code = "FS206"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run '{run_id}' in this store; `flowstate runs` lists the runs")


class ThreadNotFound(RunNotFound):
    """No run of the store is on that thread."""

    code = "FS228"

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        FlowstateError.__init__(
            self,
            f"no thread {thread_id!r} in this store: list threads with `flowstate threads`, "
            f"or start it with `app.run(input, thread_id={thread_id!r})`",
        )


class RunStateError(FlowstateError):
    """The run's status does not allow the operation."""

    code = "FS207"


class RunOwned(RunStateError):
    """Another live process holds the run's lease: one writer per run."""

    code = "FS212"
    retryable = True

    def __init__(self, run_id: str, owner: str, lease_until: float) -> None:
        import time

        self.run_id = run_id
        self.owner = owner
        self.lease_until = lease_until
        left = max(0.0, lease_until - time.time())
        super().__init__(
            f"run {run_id} is being executed by {owner} (its lease runs {left:.1f}s more); "
            f"wait for it: `flowstate resume {run_id} --wait SECONDS` (Python: "
            "`resume(run_id, wait=SECONDS)`), or resume after its lease expires if that "
            "process died"
        )


class LeaseLost(RunStateError):
    """This process's lease on a run was taken over; its commits are rejected (fenced)."""

    code = "FS213"

    def __init__(self, run_id: str, epoch: int, detail: str = "") -> None:
        self.run_id = run_id
        self.epoch = epoch
        super().__init__(
            f"this process no longer owns run {run_id} (epoch {epoch} was taken over"
            f"{': ' + detail if detail else ''}); its commit was rejected and nothing of it "
            "was stored. Another process continues the run."
        )


class EditRefused(RunStateError):
    """An edit of a stored run (``update_state``, ``resume(update=..., goto=...)``) cannot
    apply where the run is: the message says why and what to do instead."""

    code = "FS222"

    def __init__(self, run_id: str, detail: str, owner: str | None = None) -> None:
        self.run_id = run_id
        self.owner = owner
        """The process executing the run (``EditWhileRunning``), else None."""
        super().__init__(f"cannot edit run {run_id}: {detail}")


class EditWhileRunning(EditRefused):
    """The run to edit is being executed by a live process (it holds the run's lease):
    pause it, and edit it once it has stopped."""

    code = "FS221"


class CancelledElsewhere(RunStateError):
    """Another process cancelled the run: once that cancel is acknowledged (its
    ``cancelled`` status committed), the owner's commits are refused."""

    code = "FS214"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} was cancelled from another process; this commit was refused and "
            "nothing of it was stored. Resume the run to continue it"
        )


class ThreadBusy(RunStateError):
    """New input for a thread whose last turn is running (a live lease), queued, paused or
    failed, under the ``reject`` strategy (the default)."""

    code = "FS225"

    def __init__(self, thread_id: str, turn: int, run_id: str, status: str, hint: str) -> None:
        self.thread_id, self.turn, self.run_id, self.status = thread_id, turn, run_id, status
        super().__init__(
            f"thread {thread_id!r} has turn {turn} (run {run_id}) {status}, so the new "
            f"input was rejected and nothing was stored: {hint}"
        )


class TurnConflict(RunStateError):
    """Two callers started the same turn of a thread: the other one was first."""

    code = "FS226"
    retryable = True

    def __init__(self, thread_id: str, turn: int, run_id: str) -> None:
        self.thread_id, self.turn, self.run_id = thread_id, turn, run_id
        super().__init__(
            f"turn {turn} of thread {thread_id!r} (or run id {run_id}) is already stored: "
            "another caller started it first and run "
            f"{run_id} was not created; send the input again (its strategy then decides: "
            "reject, enqueue or interrupt)"
        )


class TurnNotReady(RunStateError):
    """A queued turn cannot start before the turn ahead of it has finished."""

    code = "FS227"

    def __init__(self, run_id: str, thread_id: str, turn: int, ahead: str, status: str) -> None:
        self.run_id, self.thread_id, self.turn = run_id, thread_id, turn
        super().__init__(
            f"run {run_id} is turn {turn} of thread {thread_id!r}, queued behind turn "
            f"{turn - 1} (run {ahead}), which is {status}: it starts from that turn's final "
            f"state, so finish it first ({resume_hint(ahead)}) or cancel it "
            f"(`app.cancel({ahead!r})`; the queued turn then starts from its last commit)"
        )


class EffectError(FlowstateError):
    """An effect's request or result cannot be journaled as JSON."""

    code = "FS208"


class StoreError(FlowstateError):
    """The checkpoint store failed; this is not your node code."""

    code = "FS300"


class CorruptRowError(StoreError):
    """A stored row failed its integrity hash or schema validation."""

    code = "FS301"

    def __init__(self, table: str, run_id: str, step: int | None, detail: str) -> None:
        self.table = table
        self.run_id = run_id
        self.step = step
        at = f" step {step}" if step is not None else ""
        super().__init__(
            f"corrupt row in table '{table}' for run {run_id}{at}: {detail}. "
            "Nothing was loaded from it; run `flowstate doctor` to check the database."
        )


class StoreIOError(StoreError):
    """The database reported an I/O, disk or locking failure."""

    code = "FS302"
    retryable = True


class EncryptionError(FlowstateError):
    """Encryption at rest: the keys given cannot open (or seal) what the store holds."""

    code = "FS303"


class EncryptionRequired(EncryptionError):
    """The database holds encrypted values (or is marked encrypted) and no keyring was
    given: nothing is returned as state, nothing is written in plaintext."""

    code = "FS304"

    def __init__(self, where: str, *, writing: bool = False) -> None:
        self.where = where
        what = (
            "this database is encrypted: refusing to write a plaintext value to"
            if writing
            else "this value is encrypted and no keyring was given to read"
        )
        super().__init__(
            f"{what} {where}. Set FLOWSTATE_KEYS=kid:base64key (or pass "
            "encryption=Keyring(...) to the store) with the key(s) the database was written with"
        )


class KeyMissing(EncryptionError):
    """A value is sealed under a key id the keyring does not hold (a key rotated out)."""

    code = "FS305"

    def __init__(self, key_id: str, where: str, known: list[str]) -> None:
        self.key_id = key_id
        self.where = where
        super().__init__(
            f"{where} is encrypted under key id {key_id!r}, which is not in the keyring "
            f"(it holds {', '.join(known) or 'no keys'}): add key {key_id!r} back to "
            "FLOWSTATE_KEYS (or the Keyring): keep a rotated-out key while any run "
            "written under it is kept"
        )


class DecryptionFailed(EncryptionError):
    """A sealed value does not authenticate: a wrong key under that id, a tampered value,
    or a value moved from another row."""

    code = "FS306"

    def __init__(self, key_id: str, where: str, detail: str) -> None:
        self.key_id = key_id
        self.where = where
        super().__init__(
            f"{where} does not decrypt under key id {key_id!r} ({detail}): the key given "
            f"for {key_id!r} is not the one it was written with, or the row was altered or "
            "copied from another row. Check FLOWSTATE_KEYS; run `flowstate doctor`"
        )


class CLIError(FlowstateError):
    """The command line was given something it cannot use: an option, JSON, a file."""

    code = "FS400"


class GraphLoadError(CLIError):
    """``module:attr`` (or ``path.py:attr``) does not name a graph or registry to load."""

    code = "FS401"


class DatabaseNotFound(CLIError):
    """A command that reads runs found no checkpoint database where it looked."""

    code = "FS402"


class QueueUnavailable(ConfigError):
    """The fleet (``enqueue``, ``flowstate worker``) needs a store with a run queue: a
    database its processes share (an SQLite file, or PostgreSQL)."""

    code = "FS230"

    def __init__(self, store: object, reason: str | None = None) -> None:
        self.store = store
        super().__init__(
            f"{store!r} has no run queue: "
            + (
                reason
                or "the fleet (enqueue, flowstate worker) needs a database its processes "
                "share: an SQLite file for several processes on one machine (--db runs.db) "
                "or PostgreSQL for several machines (--db postgresql://...)"
            )
        )


class NoWorkerGraphs(ConfigError):
    """A worker was started without any graph to run."""

    code = "FS231"

    def __init__(self, target: str) -> None:
        super().__init__(
            f"'{target}' holds no graphs: a worker needs at least one graph to run; point "
            "--graphs at a GraphRegistry, a dict or a list of compiled graphs"
        )


class TimerError(FlowstateError, ValueError):
    """``ctx.sleep``, ``ctx.sleep_until`` or an interrupt ``timeout`` was given something
    that is not a duration or a time (a negative or non-finite number, a naive datetime)."""

    code = "FS240"


class ScheduleError(FlowstateError, ValueError):
    """A schedule cannot be created or fired as given: its cron expression, time zone,
    catch-up policy, input or graph; the message names the field and the fix."""

    code = "FS241"


class ScheduleNotFound(ScheduleError):
    """No schedule with that name in the store."""

    code = "FS242"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"no schedule {name!r} in this store; `flowstate schedule list` lists them"
        )
