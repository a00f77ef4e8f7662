"""`pipeline_crew`: a fixed sequence of agents, each working on the previous one's output.

    START → begin → <agent 1> → <agent 2> → … → <agent N> → finish → END

Stage 1 receives the user's request; stage i+1 receives stage i's answer (with the original
request as context). The last stage's answer is the crew's answer. A stage that answers
nothing stops the pipeline with status `bad_output` rather than feeding an empty text on.
"""

from collections.abc import Callable

from flowstate.engine import END, START, GraphBuilder, NodeContext, Send
from flowstate.errors import GraphBuildError

from ._common import MemorySpec, memory_spec
from ._crew_agents import Agent, LogUpdate, add_assignee, check_agents, send_to
from ._crew_common import FinishUpdate, remember_answer, task_message, turn_log
from ._crew_models import Assignment, CrewMessage, CrewState

__all__ = ["PipelineState", "pipeline_crew"]


class PipelineState(CrewState):
    """State of `pipeline_crew`; each stage's output is an `answer` message with
    `{"stage": i}` (0-based) in the log."""


def pipeline_crew(
    agents: list[Agent], *, name: str = "pipeline_crew", memory: MemorySpec | None = None
) -> GraphBuilder[PipelineState]:
    """A crew that runs `agents` in order, each on the previous one's output.

    With `memory` (a `MemorySpec`), every model stage recalls memories relevant to its input
    into its system prompt before its call; the stages' outputs (observations) and the final
    answer are remembered (the last stage's output once, as the answer, when both are).
    """
    stages = list(agents)
    problems = check_agents(stages, reserved=("begin", "finish", "user", "crew"), role="stage")
    spec = memory_spec(memory, "pipeline_crew")
    if problems:
        raise GraphBuildError(name, problems)
    names = [a.name for a in stages]
    n = len(stages)

    def assignment(s: PipelineState, i: int) -> Assignment:
        recipient = names[i + 1] if i + 1 < n else "user"
        if i == 0:
            task, context = s.task, ""
        else:
            task = _output(turn_log(s.log), i - 1) or ""
            context = f"(Stage {i + 1} of {n}. The original request: {s.task})"
        return Assignment(
            agent=names[i],
            task=task,
            context=context,
            sender=names[i - 1] if i else "user",
            reply_to=recipient,
            metadata={"stage": i},
        )

    def stopped(s: PipelineState, i: int) -> bool:
        """Whether the pipeline ends instead of running stage `i` (0-based)."""
        return i == n or (i > 0 and not _output(turn_log(s.log), i - 1))

    def to_stage(i: int) -> Callable[[PipelineState], list[Send]]:
        def route(s: PipelineState) -> list[Send]:
            return [] if stopped(s, i) else [send_to(stages[i], assignment(s, i), s)]

        route.__name__ = route.__qualname__ = f"to_{names[i]}"
        return route

    def to_finish(i: int) -> Callable[[PipelineState], str]:
        # a router of its own: one that can also fan out would make `finish` look like a node
        # that may run several times in one step
        def route(s: PipelineState) -> str:
            return "finish" if stopped(s, i) else END

        route.__name__ = route.__qualname__ = f"after_{names[i - 1]}"
        return route

    async def begin(s: PipelineState) -> LogUpdate:
        return {"log": [task_message(s.task, names[0])]}

    async def finish(s: PipelineState) -> FinishUpdate:
        for i in range(n):
            out = _output(turn_log(s.log), i)
            if not out:
                return {
                    "status": "bad_output",
                    "log": [
                        CrewMessage(
                            sender="crew",
                            recipient="user",
                            content=f"stage {i + 1} ({names[i]!r}) gave an empty answer; the "
                            "pipeline stopped there",
                            type="critique",
                            metadata={"stage": i},
                        )
                    ],
                }
        return {"answer": _output(turn_log(s.log), n - 1) or "", "status": "done"}

    async def finish_and_remember(s: PipelineState, ctx: NodeContext) -> FinishUpdate:
        update = await finish(s)
        if update.get("status") == "done":
            remember_answer(ctx, spec, s.task, update.get("answer", ""))
        return update

    def observe(assignment: Assignment) -> bool:
        # the last stage's output is the answer: remembered once, by `finish`
        return not (spec is not None and spec.answers and assignment.metadata["stage"] == n - 1)

    g = GraphBuilder(PipelineState, name=name)
    g.add_node(begin, max_visits=1)
    for agent in stages:
        add_assignee(g, agent, max_visits=1, memory=spec, observe=observe)
    g.add_node("finish", finish if spec is None else finish_and_remember, max_visits=1)
    g.add_edge(START, "begin")
    g.add_conditional_edges("begin", to_stage(0), targets=[names[0]])
    for i, agent in enumerate(stages, 1):
        if i < n:
            g.add_conditional_edges(agent.name, to_stage(i), targets=[names[i]])
        g.add_conditional_edges(agent.name, to_finish(i), targets=["finish", END])
    g.add_edge("finish", END)
    return g


def _output(log: list[CrewMessage], stage: int) -> str | None:
    """The answer of stage `stage` (0-based), or None if it has not answered."""
    for m in reversed(log):
        if m.type == "answer" and m.metadata.get("stage") == stage:
            return m.content
    return None
