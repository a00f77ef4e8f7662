"""`debate_crew`: N agents answer independently, refine over R rounds, and one answer comes out.

    START → open ─Send per debater─→ <debater> … → moderate ─Send per debater─→ … (R rounds)
                                                           └→ synthesise → END

Round 0: every debater answers the question alone. Rounds 1…R: every debater sees its own
latest answer and the others' latest answers and gives an improved one. All debaters of a
round run in the same step; `moderate` counts the rounds, and its router stops after R, so the
loop is bounded by construction (and each debater node has `max_visits=R+1` as a backstop).
"""

from collections.abc import Sequence
from typing import Literal, TypedDict, cast

from flowstate.engine import END, START, GraphBuilder, NodeContext, Send
from flowstate.errors import GraphBuildError
from flowstate.llm import LLM

from ._common import MemorySpec, memory_spec
from ._crew_agents import Agent, LogUpdate, add_assignee, agent_from_llm, check_agents, send_to
from ._crew_common import (
    FinishUpdate,
    resolve_synthesiser,
    synthesise_answers,
    task_message,
    turn_log,
)
from ._crew_models import Assignment, CrewMessage, CrewState

__all__ = ["DEBATER_SYSTEM", "DebateState", "debate_crew"]

DEBATER_SYSTEM = (
    "Answer the question as well as you can, concisely, and give your reasons. When you are "
    "shown other debaters' answers, check them critically: keep what is right, correct what is "
    "wrong (theirs or yours), and say where you changed your mind."
)
"""Default system prompt of debaters built from a model (after `You are debater_i, one of N
debaters.`)."""


class DebateState(CrewState):
    """State of `debate_crew`."""

    round: int = 0
    """The round being answered: 0 for the independent answers, then 1…rounds."""


class _RoundUpdate(TypedDict):
    round: int


def debate_crew(
    debaters: LLM | Sequence[Agent],
    *,
    n_agents: int = 3,
    rounds: int = 2,
    synthesiser: Agent | LLM | None = None,
    system: str | None = None,
    name: str = "debate_crew",
    memory: MemorySpec | None = None,
) -> GraphBuilder[DebateState]:
    """A debate among `n_agents` debaters built on one model, or among the given agents.

    Given a model, the debaters are `debater_1` … `debater_N`, each with the system prompt
    `You are debater_i, one of N debaters. ` followed by `system` (default `DEBATER_SYSTEM`).
    Given agents (two or more), `n_agents` and `system` are not used. Their answers are
    messages of type `answer` with `{"round": r}`; after round `rounds` the synthesiser
    (default: the model, or the first model agent's model) writes `answer`.

    With `memory` (a `MemorySpec`), every model debater and the synthesiser recall memories
    relevant to their task into their system prompt before each call; the debaters' answers
    of the last round (observations) and the final answer are remembered.
    """
    problems: list[str] = []
    agents: list[Agent]
    fallback: LLM | None
    if isinstance(debaters, Sequence) and not isinstance(debaters, str):
        agents = list(debaters)
        problems += check_agents(
            agents,
            reserved=("open", "moderate", "synthesise", "moderator", "user", "crew"),
            role="debater",
        )
        if len(agents) < 2:
            problems.append(f"a debate needs at least two debaters, got {len(agents)}")
        fallback = next((a.llm for a in agents if isinstance(a, Agent) and a.llm is not None), None)
    else:
        model = cast("LLM", debaters)  # not a sequence of agents: the one model
        if n_agents < 2:
            problems.append(f"a debate needs at least two debaters: n_agents={n_agents}")
        agents = [
            agent_from_llm(
                f"debater_{i}",
                model,
                f"You are debater_{i}, one of {n_agents} debaters. {system or DEBATER_SYSTEM}",
                f"debater {i} of {n_agents}",
            )
            for i in range(1, max(n_agents, 0) + 1)
        ]
        fallback = model
    if rounds < 0:
        problems.append(f"rounds must be 0 or more, not {rounds}")
    synth = resolve_synthesiser(synthesiser, fallback, problems)
    spec = memory_spec(memory, "debate_crew")
    if problems or synth is None:
        raise GraphBuildError(name, problems)
    by_name = {a.name: a for a in agents}
    names = list(by_name)

    def last_round(assignment: Assignment) -> bool:
        return assignment.metadata.get("round") == rounds

    async def open_debate(s: DebateState) -> LogUpdate:
        return {"log": [task_message(s.task, "moderator")]}

    async def moderate(s: DebateState) -> _RoundUpdate:
        return {"round": s.round + 1}

    def next_round(s: DebateState) -> list[Send]:
        if s.round > rounds:
            return []
        latest = _latest_answers(turn_log(s.log))
        sends: list[Send] = []
        for agent in agents:
            context = ""
            if s.round > 0:
                others = "\n\n".join(
                    f"[{n}]\n{latest.get(n) or '(no answer)'}" for n in names if n != agent.name
                )
                context = (
                    f"Your previous answer:\n{latest.get(agent.name) or '(no answer)'}\n\n"
                    f"The other debaters' latest answers:\n\n{others}\n\n"
                    f"Round {s.round} of {rounds}: weigh their arguments and give your improved "
                    "answer."
                )
            assignment = Assignment(
                agent=agent.name,
                task=f"Question: {s.task}",
                context=context,
                sender="moderator",
                metadata={"round": s.round},
            )
            sends.append(send_to(agent, assignment, s))
        return sends

    def debate_over(s: DebateState) -> Literal["synthesise", "__end__"]:
        # a router of its own: one that can also fan out would make `synthesise` look like a
        # node that may run several times in one step
        return "synthesise" if s.round > rounds else END

    async def synthesise(s: DebateState, ctx: NodeContext) -> FinishUpdate:
        final = [
            m
            for m in turn_log(s.log)
            if m.type == "answer"
            and m.recipient == "moderator"
            and m.metadata.get("round") == rounds
        ]
        heading = f"The debaters' final answers after {rounds} round(s) of debate:"
        return await synthesise_answers(synth, ctx, s.task, heading, final, spec)

    g = GraphBuilder(DebateState, name=name)
    g.add_node("open", open_debate, max_visits=1)
    for agent in agents:
        add_assignee(g, agent, max_visits=rounds + 1, memory=spec, observe=last_round)
        g.add_edge(agent.name, "moderate")
    g.add_node(moderate, max_visits=rounds + 1)
    g.add_node(synthesise, max_visits=1)
    g.add_edge(START, "open")
    g.add_conditional_edges("open", next_round, targets=names)
    g.add_conditional_edges("moderate", next_round, targets=names)
    g.add_conditional_edges("moderate", debate_over)
    g.add_edge("synthesise", END)
    return g


def _latest_answers(log: list[CrewMessage]) -> dict[str, str]:
    latest: dict[str, str] = {}
    for m in log:
        if m.type == "answer" and m.recipient == "moderator":
            latest[m.sender] = m.content
    return latest
