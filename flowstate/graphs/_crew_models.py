"""The data crews share: the message log, assignments, delegations and the base crew state.

Everything here is plain pydantic data that round-trips through JSON, because it lives in the
checkpointed state and in `Send` payloads. A crew's whole conversation is its `log`: a list of
`CrewMessage` with an append reducer, so parallel agents add to it without conflicts and the
order of their messages is the order they were sent in (never completion time).
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowstate.engine import append

__all__ = [
    "Assignment",
    "CrewMessage",
    "CrewState",
    "CrewStatus",
    "Delegate",
    "Delegation",
    "MessageType",
]

MessageType = Literal["task", "answer", "critique", "synthesis", "delegate", "result"]
"""What a `CrewMessage` is:

- `task`: the user's request, or work handed to an agent by an orchestrator;
- `answer`: an agent's answer to a task (a specialist, a debater, a pipeline stage), or the
  coordinator's final answer;
- `critique`: something the crew itself reports: unknown agent names, an unusable model reply,
  a limit reached; never silently dropped;
- `synthesis`: the synthesiser's combined final answer;
- `delegate`: a `Delegate` record sent by the coordinator (or a delegating agent);
- `result`: a delegated agent's answer, sent back to whoever delegated.
"""

CrewStatus = Literal["running", "done", "no_specialist", "bad_output", "limit", "truncated"]
"""Where a crew run stands (`CrewState.status`):

- `running`: not finished (the value while the run is in progress, or if it paused);
- `done`: the crew produced its answer (`CrewState.answer`);
- `no_specialist`: the orchestrator chose no known specialist; `answer` stays empty;
- `bad_output`: a model reply could not be used (no specialist named, no DELEGATE/ANSWER line,
  an empty answer) even after the corrections it was given; `answer` stays empty;
- `limit`: a delegation budget (`max_delegations`) or an agent's `max_visits` was reached before
  an answer; `answer` stays empty and the log holds every result obtained;
- `truncated`: the final answer hit `max_tokens` and was still cut off after the allowed
  continuations; `answer` stays empty and a `critique` in the log says so (raise the
  synthesiser's `max_tokens`).
"""

_STRICT = ConfigDict(extra="forbid")


class CrewMessage(BaseModel):
    """One entry of a crew's message log."""

    model_config = _STRICT

    sender: str
    """Who wrote it: an agent's name, `user`, `orchestrator`, `coordinator`, `crew` (the crew's
    own reports), …"""
    recipient: str
    """Who it is for: an agent's name, `user`, `orchestrator`, `coordinator`, `moderator`, …"""
    content: str
    """The text."""
    type: MessageType
    """What kind of message it is (see `MessageType`)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """JSON details: `{"unknown": [...]}` on a critique about unknown names, `{"round": 1}` on a
    debate answer, `{"delegation": "d2", ...}` on delegations and their results, …"""


class Delegate(BaseModel):
    """A handoff, as the coordinator (or a delegating agent) asked for it.

    It is a typed record in the state and the log, not a tool call: nothing is added to any
    model conversation that would need a matching tool result.
    """

    model_config = _STRICT

    target: str
    """Name of the agent asked to do the work."""
    task: str
    """What the agent should do, self-contained."""
    context: str = ""
    """What the agent needs to know from earlier work (may be empty)."""


class Delegation(BaseModel):
    """An open delegation on the coordinator crew's stack (`CoordinatorState.stack`)."""

    model_config = _STRICT

    id: str
    """`d1`, `d2`, … in the order delegations were made in the run."""
    caller: str
    """Who delegated: `coordinator` or an agent's name; the result goes back to it."""
    delegate: Delegate
    """The handoff itself."""
    depth: int
    """1 for a delegation by the coordinator, 2 for one by an agent working on a depth-1
    delegation, …; bounded by `max_depth`."""
    parent: str | None = None
    """Id of the delegation the caller was working on when it delegated; None for the
    coordinator's own delegations."""


class Assignment(BaseModel):
    """One piece of work for one agent: the payload of its activation."""

    model_config = _STRICT

    agent: str
    """The agent that does the work."""
    task: str
    """What to do."""
    context: str = ""
    """Background appended after the task (other agents' answers, the original request, …)."""
    sender: str
    """Who asked."""
    reply_to: str | None = None
    """Who the reply is addressed to; None means the sender (a pipeline stage answers to the
    next stage)."""
    reply_type: Literal["answer", "result"] = "answer"
    """The `CrewMessage.type` of the reply."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Copied into the reply's `CrewMessage.metadata` (round, stage, delegation id, …)."""

    @property
    def prompt(self) -> str:
        """The text the agent receives: the task, then the context when there is one."""
        return f"{self.task}\n\n{self.context}" if self.context else self.task


class CrewState(BaseModel):
    """Fields every crew state has. Each crew extends it with its own bookkeeping."""

    task: str = Field(min_length=1)
    """The user's request."""
    log: Annotated[list[CrewMessage], append] = []
    """Every message of the crew, in order (append reducer)."""
    answer: str = ""
    """The crew's final answer; empty unless `status` is `done`."""
    status: CrewStatus = "running"
    """How the run ended (see `CrewStatus`)."""
    assignment: Assignment | None = None
    """The assignment handed to a graph agent (a subgraph reads it through its input map)."""
