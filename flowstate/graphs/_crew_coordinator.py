"""`coordinator_crew`: a coordinator delegates to named agents, one typed handoff at a time.

    START → coordinator ─Command(goto=agent)─→ <agent> ─Command(goto=caller)─→ coordinator …
                       └─ ANSWER ─→ END (status done)        (limit / bad_output ─→ END)

A handoff is a typed `Delegate(target, task, context)` record, parsed from a
`DELEGATE <agent>: <task>` reply, pushed on `CoordinatorState.stack` and logged as a `delegate`
message. It is not a fake tool call, so no model conversation ever holds a `tool_use` without
its `tool_result`. Every edge is declared (`goto=[...]`), so `compile()` checks the targets and
the diagram shows them.

Delegation is bounded four ways: `max_delegations` for the whole run (reaching it ends the run
with status `limit`), `max_visits` per agent (a delegation to an agent at its limit is refused),
`max_depth` (with `max_depth=2`, an agent working on the coordinator's task may itself delegate
once more; agents at the maximum depth just answer), and no delegation to anyone already on the
stack (the coordinator itself included), which rules out A → B → A loops. Each node also has an
engine `max_visits` computed from these bounds, as a backstop.

A reply that cannot be used (unknown agent, refused target, no DELEGATE/ANSWER line from the
coordinator) is logged as a `critique` and answered with a correction in the same activation,
`max_retries` times; then the run ends with status `bad_output` (or `limit`).
"""

from typing import Any, TypedDict

from pydantic import Field

from flowstate.engine import END, START, Command, GraphBuilder, NodeContext
from flowstate.errors import GraphBuildError
from flowstate.llm import LLM, JournaledLLM, Message, assistant, user

from ._common import MemorySpec, memory_spec, recall, with_memories
from ._crew_agents import Agent, add_assignee, check_agents, remember_reply
from ._crew_common import logged, remember_answer, roster, task_message, this_turn
from ._crew_models import (
    Assignment,
    CrewMessage,
    CrewState,
    CrewStatus,
    Delegate,
    Delegation,
)
from ._crew_parse import Decision, name_key, parse_decision

__all__ = ["COORDINATOR", "COORDINATOR_SYSTEM", "CoordinatorState", "coordinator_crew"]

COORDINATOR = "coordinator"
"""Name of the coordinator's node, and its name in the log."""

COORDINATOR_SYSTEM = (
    "You are the coordinator of a crew of agents. You do not do the work yourself: you delegate "
    "tasks to the agents, one at a time, read their results, and answer the user once you have "
    "what you need."
)
"""Default first paragraph of the coordinator's system prompt (`system=` replaces it); the
list of agents and the reply format are always appended."""

_COORDINATOR_FORMAT = (
    "To delegate, reply with:\n"
    "DELEGATE <agent name>: <the task, self-contained>\n"
    "CONTEXT: <what the agent needs to know from earlier results> (optional)\n\n"
    "To finish, reply with:\n"
    "ANSWER: <your final answer to the user>\n\n"
    "Reply with exactly one DELEGATE or one ANSWER."
)
_AGENT_FORMAT = (
    "To delegate, reply with:\n"
    "DELEGATE <agent name>: <the task, self-contained>\n"
    "CONTEXT: <what the agent needs to know> (optional)\n\n"
    "Otherwise reply with your answer (you may start it with ANSWER:)."
)


class CoordinatorState(CrewState):
    """State of `coordinator_crew`."""

    stack: list[Delegation] = Field(default_factory=list)
    """Open delegations, oldest first; the last one is being worked on. The caller pops its
    delegation when the result comes back."""
    delegations: int = 0
    """Delegations made so far in the run (at most `max_delegations`)."""


class _TurnUpdate(TypedDict, total=False):
    log: list[CrewMessage]
    stack: list[Delegation]
    delegations: int
    assignment: Assignment
    answer: str
    status: CrewStatus


def coordinator_crew(
    llm: LLM,
    agents: list[Agent],
    *,
    max_delegations: int = 8,
    max_depth: int = 1,
    max_visits: int | None = None,
    max_retries: int = 1,
    system: str | None = None,
    name: str = "coordinator_crew",
    memory: MemorySpec | None = None,
) -> GraphBuilder[CoordinatorState]:
    """A crew where `llm` coordinates `agents` by delegating to them by name.

    - `max_delegations`: delegations allowed in the whole run; asking for one more ends the run
      with status `limit` (the coordinator is told how many are left, and to answer at zero).
    - `max_depth`: how deep delegation may nest. 1 (the default): only the coordinator
      delegates. 2: a model agent working on the coordinator's task may delegate too.
    - `max_visits`: how many tasks each agent may be given (an agent's own `max_visits` wins).
    - `max_retries`: corrections a model gets for an unusable reply before the run ends with
      status `bad_output`.
    - `memory` (a `MemorySpec`): before each turn, the coordinator or model agent recalls
      memories relevant to its task into its system prompt; the agents' results
      (observations) and the coordinator's final answer are remembered.
    """
    problems = check_agents(agents, reserved=(COORDINATOR, "user", "crew"), role="agent")
    for label, value, least in (
        ("max_delegations", max_delegations, 1),
        ("max_depth", max_depth, 1),
        ("max_retries", max_retries, 0),
    ):
        if value < least:
            problems.append(f"{label} must be at least {least}, not {value}")
    if max_visits is not None and max_visits < 1:
        problems.append(f"max_visits must be at least 1, not {max_visits}")
    spec = memory_spec(memory, "coordinator_crew")
    if problems:
        raise GraphBuildError(name, problems)
    by_name = {a.name: a for a in agents}
    by_key = {name_key(a.name): a.name for a in agents}
    limit = {a.name: a.max_visits or max_visits for a in agents}
    coordinator_system = (
        f"{system or COORDINATOR_SYSTEM}\n\nAgents:\n{roster(agents)}\n\n{_COORDINATOR_FORMAT}"
    )

    def visits(log: list[CrewMessage], agent: str) -> int:
        return sum(1 for m in log if m.type == "delegate" and m.recipient == agent)

    def exhausted(log: list[CrewMessage]) -> list[str]:
        return [a for a in by_name if limit[a] is not None and visits(log, a) >= (limit[a] or 0)]

    def history(log: list[CrewMessage], frame: str | None) -> str:
        lines = []
        for m in log:
            if m.metadata.get("parent", "-") != frame:
                continue
            if m.type == "delegate":
                lines.append(f"[{m.metadata['delegation']}] you → {m.recipient}: {m.content}")
            elif m.type == "result":
                lines.append(
                    f"[{m.metadata['delegation']}] {m.sender} → you: {m.content or '(no answer)'}"
                )
        return "\n".join(lines) or "(none yet)"

    def budget(s: CoordinatorState) -> str:
        left = max_delegations - s.delegations
        text = f"Delegations used: {s.delegations} of {max_delegations}."
        full = exhausted(this_turn(s.log, s.task))
        if full:
            text += f" These agents cannot take more tasks: {', '.join(full)}."
        if left <= 0:
            text += " No delegations are left: reply with ANSWER: and your final answer."
        return text

    def prompt_for(s: CoordinatorState, me: str, frame: Delegation | None, may: bool) -> str:
        if frame is None:
            head = f"Task: {s.task}"
        else:
            head = assignment_of(frame).prompt
        if not may:
            return head
        frame_id = frame.id if frame else None
        done = history(this_turn(s.log, s.task), frame_id)
        return f"{head}\n\nYour delegations so far:\n{done}\n\n{budget(s)}"

    def system_for(me: str, stack: list[Delegation], may: bool) -> str | None:
        if me == COORDINATOR:
            return coordinator_system
        own = by_name[me].system
        if not may:
            return own
        busy = {d.caller for d in stack} | {d.delegate.target for d in stack}
        others = [a for a in agents if a.name not in busy]
        if not others:
            return own
        offer = f"You may hand part of your task to another agent:\n{roster(others)}"
        return f"{own}\n\n{offer}\n\n{_AGENT_FORMAT}"

    def assignment_of(frame: Delegation) -> Assignment:
        d = frame.delegate
        return Assignment(
            agent=d.target,
            task=f"Task from {frame.caller}: {d.task}",
            context=f"Context from {frame.caller}: {d.context}" if d.context else "",
            sender=frame.caller,
            reply_type="result",
            metadata={"delegation": frame.id, "parent": frame.parent},
        )

    def critique(me: str, content: str, metadata: dict[str, Any]) -> CrewMessage:
        return CrewMessage(
            sender="crew", recipient=me, content=content, type="critique", metadata=metadata
        )

    async def take_turn(s: CoordinatorState, ctx: NodeContext, me: str) -> Command[_TurnUpdate]:
        stack = list(s.stack)
        update: _TurnUpdate = {}
        log: list[CrewMessage] = []
        if stack and stack[-1].caller == me:  # my delegation came back: its result is logged
            stack.pop()
            update["stack"] = stack
        frame = stack[-1] if stack else None
        if me == COORDINATOR:
            if frame is not None:
                raise RuntimeError(
                    f"the coordinator ran while delegation {frame.id} to "
                    f"{frame.delegate.target!r} is still open; coordinator_crew's wiring is broken"
                )
            if not logged(s.log, s.task):  # the turn's first coordinator activation
                log.append(task_message(s.task, COORDINATOR))
        elif frame is None or frame.delegate.target != me:
            raise RuntimeError(
                f"agent {me!r} ran without a delegation to it on the stack; coordinator_crew's "
                "wiring is broken"
            )
        depth = len(stack)
        may = depth < max_depth
        model_llm = llm if me == COORDINATOR else by_name[me].llm
        assert model_llm is not None
        max_tokens = 1024 if me == COORDINATOR else by_name[me].max_tokens
        model = JournaledLLM(model_llm, ctx)
        system_prompt = system_for(me, stack, may)
        if spec is not None:
            query = s.task if frame is None else assignment_of(frame).prompt
            system_prompt = with_memories(system_prompt, await recall(ctx, spec, query))
        messages: list[Message] = [user(prompt_for(s, me, frame, may))]
        on_stack = (
            {COORDINATOR, me} | {d.caller for d in stack} | {d.delegate.target for d in stack}
        )
        reason = "bad_output"
        text = ""
        for attempt in range(max_retries + 1):
            reply = await model.complete(messages, system=system_prompt, max_tokens=max_tokens)
            text = reply.text.strip()
            if may:
                decision = parse_decision(text, strict=me == COORDINATOR)
            elif text:
                decision = Decision("answer", answer=text)
            else:
                decision = Decision("invalid", problem="it is empty")
            if decision.kind == "answer":
                if frame is None:
                    remember_answer(ctx, spec, s.task, decision.answer)
                else:
                    remember_reply(ctx, spec, me, assignment_of(frame), decision.answer)
                return finish(update, log, me, frame, decision.answer)
            if decision.kind == "delegate":
                d = decision.delegate
                assert d is not None
                if s.delegations >= max_delegations:
                    log.append(
                        CrewMessage(
                            sender="crew",
                            recipient="user",
                            content=(
                                f"{me} asked to delegate to {d.target!r}, but all "
                                f"{max_delegations} delegations of the run are used; the crew "
                                "stopped without an answer"
                            ),
                            type="critique",
                            metadata={
                                "limit": "max_delegations",
                                "max_delegations": max_delegations,
                                "refused": d.model_dump(),
                            },
                        )
                    )
                    return Command(update={**update, "log": log, "status": "limit"}, goto=END)
                busy = {name_key(n): n for n in on_stack}
                target = by_key.get(name_key(d.target))
                if name_key(d.target) in busy:
                    looped = busy[name_key(d.target)]
                    problem = (
                        f"{looped!r} is already working on this chain of delegations (or is "
                        "you); delegating to it would loop"
                    )
                    log.append(
                        critique(me, f"refused delegation: {problem}", {"refused": [looped]})
                    )
                    reason = "bad_output"
                elif target is None:
                    problem = (
                        f"{d.target!r} is not an agent of this crew; the agents are "
                        f"{', '.join(by_name)}"
                    )
                    log.append(
                        critique(me, f"dropped delegation: {problem}", {"unknown": [d.target]})
                    )
                    reason = "bad_output"
                elif target in exhausted(this_turn(s.log, s.task)):
                    problem = (
                        f"{target!r} has already been given "
                        f"{visits(this_turn(s.log, s.task), target)} task(s), its "
                        f"limit (max_visits={limit[target]})"
                    )
                    log.append(
                        critique(me, f"refused delegation: {problem}", {"exhausted": [target]})
                    )
                    reason = "limit"
                elif not d.task:
                    problem = f"its DELEGATE line names {target!r} but gives no task"
                    log.append(critique(me, f"refused delegation: {problem}", {"invalid": problem}))
                    reason = "bad_output"
                else:
                    if decision.dropped:
                        log.append(
                            critique(
                                me,
                                f"one delegation per turn: only {target!r} was delegated; "
                                f"delegate again for {', '.join(decision.dropped)}",
                                {"dropped": decision.dropped},
                            )
                        )
                    return delegate_to(s, update, log, me, frame, stack, d, target)
            else:
                problem = f"your reply cannot be used: {decision.problem}"
                log.append(critique(me, problem, {"invalid": decision.problem}))
                reason = "bad_output"
            if attempt < max_retries:
                reminder = _COORDINATOR_FORMAT if me == COORDINATOR else _AGENT_FORMAT
                messages += [
                    assistant(text or "(empty reply)"),
                    user(f"That reply cannot be used: {problem}.\n\n{budget(s)}\n\n{reminder}"),
                ]
        status: CrewStatus = "limit" if reason == "limit" else "bad_output"
        log.append(
            CrewMessage(
                sender="crew",
                recipient="user",
                content=(
                    f"{me} gave no usable reply in {max_retries + 1} attempt(s); the crew stopped "
                    f"without an answer. Its last reply: {text or '(empty)'}"
                ),
                type="critique",
                metadata={"status": status},
            )
        )
        return Command(update={**update, "log": log, "status": status}, goto=END)

    def finish(
        update: _TurnUpdate,
        log: list[CrewMessage],
        me: str,
        frame: Delegation | None,
        text: str,
    ) -> Command[_TurnUpdate]:
        if frame is None:  # the coordinator answers the user
            log.append(CrewMessage(sender=me, recipient="user", content=text, type="answer"))
            return Command(
                update={**update, "log": log, "answer": text, "status": "done"}, goto=END
            )
        log.append(
            CrewMessage(
                sender=me,
                recipient=frame.caller,
                content=text,
                type="result",
                metadata={"delegation": frame.id, "parent": frame.parent},
            )
        )
        return Command(update={**update, "log": log}, goto=frame.caller)

    def delegate_to(
        s: CoordinatorState,
        update: _TurnUpdate,
        log: list[CrewMessage],
        me: str,
        frame: Delegation | None,
        stack: list[Delegation],
        d: Delegate,
        target: str,
    ) -> Command[_TurnUpdate]:
        delegation = Delegation(
            id=f"d{s.delegations + 1}",
            caller=me,
            delegate=Delegate(target=target, task=d.task, context=d.context),
            depth=len(stack) + 1,
            parent=frame.id if frame else None,
        )
        log.append(
            CrewMessage(
                sender=me,
                recipient=target,
                content=d.task,
                type="delegate",
                metadata={
                    "delegation": delegation.id,
                    "parent": delegation.parent,
                    "depth": delegation.depth,
                    "context": d.context,
                },
            )
        )
        return Command(
            update={
                **update,
                "log": log,
                "stack": [*stack, delegation],
                "delegations": s.delegations + 1,
                "assignment": assignment_of(delegation),
            },
            goto=target,
        )

    def turn_node(me: str) -> Any:
        async def turn(s: CoordinatorState, ctx: NodeContext) -> Command[_TurnUpdate]:
            return await take_turn(s, ctx, me)

        turn.__name__ = turn.__qualname__ = me
        return turn

    def return_to_caller(s: CoordinatorState) -> str:
        return s.stack[-1].caller

    model_agents = [a.name for a in agents if a.llm is not None]
    callers = [COORDINATOR, *(model_agents if max_depth >= 2 else [])]
    g = GraphBuilder(CoordinatorState, name=name)
    g.add_node(
        COORDINATOR,
        turn_node(COORDINATOR),
        goto=[*by_name, END],
        max_visits=max_delegations + 1,
    )
    for agent in agents:
        own = limit[agent.name] or max_delegations
        if agent.llm is not None:
            may_delegate = max_depth >= 2
            others = [n for n in by_name if n != agent.name] if may_delegate else []
            targets = [COORDINATOR, *others, END]
            g.add_node(
                agent.name,
                turn_node(agent.name),
                goto=targets,
                max_visits=own + (max_delegations if may_delegate else 0),
            )
        else:
            add_assignee(g, agent, max_visits=own, memory=spec)
            g.add_conditional_edges(
                agent.name, return_to_caller, targets=[c for c in callers if c != agent.name]
            )
    g.add_edge(START, COORDINATOR)
    return g
