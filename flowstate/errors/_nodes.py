"""Errors of what a node or the graph did with the state (FS2xx, blame: your code)."""

from __future__ import annotations

from typing import Any

from ._base import RESUME_GRAPH_PLACEHOLDER, FlowstateError, resume_hint


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
