"""`orchestrator_crew`: a model picks specialists, they work in parallel, one answer comes back.

    START → orchestrate ─Send per chosen specialist─→ <specialist> … → synthesise → END
                      └─ (no known specialist chosen) → END with status no_specialist/bad_output

The orchestrator answers with lines `name: subtask`. Names are checked against the
specialists; unknown ones are dropped and reported in the log (a `critique` with
`{"unknown": [...]}`), and when no known one is left the orchestrator is asked again
(`max_retries` times) before the run ends with a clear status instead of an answer.
"""

from typing import TypedDict

from pydantic import Field

from flowstate.engine import END, START, GraphBuilder, NodeContext, Send
from flowstate.errors import GraphBuildError
from flowstate.llm import LLM, JournaledLLM, Message, assistant, user

from ._common import MemorySpec, memory_spec, recall, with_memories
from ._crew_agents import Agent, add_assignee, check_agents, send_to
from ._crew_common import (
    FinishUpdate,
    resolve_synthesiser,
    roster,
    synthesise_answers,
    task_message,
    turn_log,
)
from ._crew_models import Assignment, CrewMessage, CrewState, CrewStatus
from ._crew_parse import parse_choices

__all__ = ["ORCHESTRATOR_SYSTEM", "OrchestratorState", "orchestrator_crew"]

ORCHESTRATOR_SYSTEM = (
    "You are the orchestrator of a crew of specialists. Read the user's request and choose the "
    "specialists it needs. Each one works on the subtask you give it, in parallel with the "
    "others and without seeing their work; a synthesiser then combines their answers."
)
"""Default first paragraph of the orchestrator's system prompt (`system=` replaces it); the
list of specialists and the answer format are always appended."""


class OrchestratorState(CrewState):
    """State of `orchestrator_crew`."""

    assignments: list[Assignment] = Field(default_factory=list)
    """The subtasks the orchestrator handed out, one per chosen specialist."""


class _OrchestrateUpdate(TypedDict, total=False):
    log: list[CrewMessage]
    assignments: list[Assignment]
    status: CrewStatus


def orchestrator_crew(
    llm: LLM,
    specialists: list[Agent],
    *,
    synthesiser: Agent | LLM | None = None,
    system: str | None = None,
    max_retries: int = 1,
    name: str = "orchestrator_crew",
    memory: MemorySpec | None = None,
) -> GraphBuilder[OrchestratorState]:
    """A crew where `llm` chooses among `specialists`, which then run in parallel.

    Each chosen specialist runs once, in one step, on its own typed `Assignment` (a `Send`
    each); their answers go to the log and `synthesiser` (an `Agent` or an LLM; default: `llm`
    with `SYNTHESISER_SYSTEM`) writes `answer`. When the orchestrator names no known specialist
    even after `max_retries` corrections, the run completes with `status` `no_specialist` (it
    named only unknown ones) or `bad_output` (it named none) and an empty `answer`.
    """
    reserved = ("orchestrate", "synthesise", "orchestrator", "synthesiser", "user", "crew")
    problems = check_agents(specialists, reserved=reserved, role="specialist")
    synth = resolve_synthesiser(synthesiser, llm, problems)
    if max_retries < 0:
        problems.append(f"max_retries must be 0 or more, not {max_retries}")
    spec = memory_spec(memory, "orchestrator_crew")
    if problems or synth is None:
        raise GraphBuildError(name, problems)
    agents = {a.name: a for a in specialists}
    names = list(agents)
    instructions = (
        f"{system or ORCHESTRATOR_SYSTEM}\n\nSpecialists:\n{roster(specialists)}\n\n"
        "Reply with one line per specialist you choose, in the form\n"
        "name: the subtask for that specialist\n"
        "using only the names above. Write nothing else."
    )

    async def orchestrate(s: OrchestratorState, ctx: NodeContext) -> _OrchestrateUpdate:
        model = JournaledLLM(llm, ctx)
        log = [task_message(s.task, "orchestrator")]
        messages: list[Message] = [user(f"Request: {s.task}")]
        named_unknown = False
        text = ""
        system = instructions
        if spec is not None:
            system = with_memories(instructions, await recall(ctx, spec, s.task))
        for attempt in range(max_retries + 1):
            reply = await model.complete(messages, system=system)
            text = reply.text.strip()
            choices = parse_choices(text, names)
            if choices.unknown:
                named_unknown = True
                log.append(
                    CrewMessage(
                        sender="crew",
                        recipient="orchestrator",
                        content=(
                            f"dropped unknown specialist(s) {', '.join(choices.unknown)}; the "
                            f"specialists are {', '.join(names)}"
                        ),
                        type="critique",
                        metadata={"unknown": choices.unknown},
                    )
                )
            if choices.chosen:
                assignments = [
                    Assignment(
                        agent=agent,
                        task=subtask or s.task,
                        context=f"(This is part of the request: {s.task})" if subtask else "",
                        sender="orchestrator",
                    )
                    for agent, subtask in choices.chosen
                ]
                log += [
                    CrewMessage(
                        sender="orchestrator", recipient=a.agent, content=a.task, type="task"
                    )
                    for a in assignments
                ]
                return {"log": log, "assignments": assignments}
            if attempt < max_retries:
                problem = (
                    f"named only unknown specialists ({', '.join(choices.unknown)})"
                    if choices.unknown
                    else "named no specialist"
                )
                messages += [
                    assistant(text or "(empty answer)"),
                    user(
                        f"Your answer {problem}. Reply again with one line per specialist, "
                        f"`name: subtask`, using only these names: {', '.join(names)}."
                    ),
                ]
        status: CrewStatus = "no_specialist" if named_unknown else "bad_output"
        log.append(
            CrewMessage(
                sender="crew",
                recipient="user",
                content=(
                    f"the orchestrator chose no known specialist after {max_retries + 1} "
                    f"attempt(s); its last answer was: {text or '(empty)'}"
                ),
                type="critique",
                metadata={"status": status},
            )
        )
        return {"log": log, "status": status}

    def dispatch(s: OrchestratorState) -> list[Send]:
        if s.status != "running":
            return []
        return [send_to(agents[a.agent], a, s) for a in s.assignments]

    async def synthesise(s: OrchestratorState, ctx: NodeContext) -> FinishUpdate:
        answers = [
            m for m in turn_log(s.log) if m.type == "answer" and m.recipient == "orchestrator"
        ]
        return await synthesise_answers(
            synth, ctx, s.task, "Answers from the specialists:", answers, spec
        )

    g = GraphBuilder(OrchestratorState, name=name)
    g.add_node(orchestrate, max_visits=1)
    for agent in specialists:
        add_assignee(g, agent, max_visits=1, memory=spec)
        g.add_edge(agent.name, "synthesise")
    g.add_node(synthesise, max_visits=1)
    g.add_edge(START, "orchestrate")
    g.add_conditional_edges("orchestrate", dispatch, targets=[*names, END])
    g.add_edge("synthesise", END)
    return g
