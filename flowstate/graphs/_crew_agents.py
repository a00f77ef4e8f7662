"""`Agent`: a named specialist of a crew, and the nodes that run one.

An agent is either a model with a system prompt (`agent_from_llm`) or a whole compiled graph,
such as a ReAct agent (`agent_from_graph`; by default it reads `task` and answers in `answer`,
the fields of `react_agent`'s state). A model agent's call goes through
`JournaledLLM(llm, ctx)`, so a resumed or replayed run gets the recorded answer instead of
calling the model again. A graph agent runs as a subgraph (a child run checkpointed in the same
store): its input field receives the assignment's text and its output field becomes the reply.
"""

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from flowstate.engine import END, START, CompiledGraph, GraphBuilder, NodeContext, Send, append
from flowstate.errors import GraphBuildError
from flowstate.llm import LLM, JournaledLLM, user
from flowstate.nodes import complete_turn

from ._common import MemorySpec, note, recall, remember, with_memories
from ._crew_models import Assignment, CrewMessage, CrewState
from ._crew_parse import name_key

__all__ = [
    "AGENT_NAME",
    "Agent",
    "AgentRun",
    "LogUpdate",
    "Observe",
    "add_assignee",
    "agent_from_graph",
    "agent_from_llm",
    "check_agents",
    "remember_reply",
    "reply_message",
    "send_to",
]

AGENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
"""What an agent's name must look like: it is also the name of the agent's node."""


@dataclass(frozen=True)
class Agent:
    """A named specialist: a model with a system prompt, or a compiled graph.

    Build one with `agent_from_llm` or `agent_from_graph`; the constructor checks the fields
    the same way.
    """

    name: str
    """Unique within a crew; also the agent's node name (letters, digits, `_`, `-`)."""
    description: str = ""
    """One line on what the agent is good at; orchestrators and coordinators choose by it."""
    llm: LLM | None = None
    """The model of a model agent (None for a graph agent)."""
    system: str | None = None
    """The system prompt of a model agent."""
    graph: CompiledGraph[Any] | None = None
    """The compiled graph of a graph agent (None for a model agent)."""
    input_field: str = "task"
    """Field of the graph's state that receives the assignment's text."""
    output_field: str = "answer"
    """Field of the graph's state read as the agent's reply once its run completes."""
    max_visits: int | None = None
    """How many tasks the agent may be given in one coordinator run (None: no own limit)."""
    max_tokens: int = 1024
    """Upper bound on the tokens of a model agent's reply."""

    def __post_init__(self) -> None:
        problems = _agent_problems(self)
        if problems:
            raise GraphBuildError(self.name if isinstance(self.name, str) else "agent", problems)

    @property
    def kind(self) -> str:
        """`"llm"` or `"graph"`."""
        return "llm" if self.llm is not None else "graph"

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, {self.kind})"


def _agent_problems(agent: Agent) -> list[str]:
    problems: list[str] = []
    name = agent.name
    if not isinstance(name, str) or not AGENT_NAME.match(name):
        problems.append(
            f"agent name {name!r} is not usable as a node name: start with a letter and use "
            "only letters, digits, '_' and '-' (at most 64 characters)"
        )
    if (agent.llm is None) == (agent.graph is None):
        problems.append(
            f"agent {name!r} needs exactly one of llm= and graph=: build it with "
            "agent_from_llm(name, llm, system) or agent_from_graph(name, compiled_graph)"
        )
    if agent.llm is not None and not callable(getattr(agent.llm, "complete", None)):
        problems.append(
            f"agent {name!r}: llm={agent.llm!r} has no complete() method; pass an LLM such as "
            "AnthropicLLM(...) or ScriptedLLM(...)"
        )
    if agent.max_visits is not None and agent.max_visits < 1:
        problems.append(f"agent {name!r}: max_visits must be at least 1, not {agent.max_visits}")
    graph = agent.graph
    if graph is not None:
        if not isinstance(graph, CompiledGraph):
            problems.append(
                f"agent {name!r}: graph={graph!r} is not a compiled graph; pass "
                "builder.compile() (or the GraphBuilder itself to agent_from_graph)"
            )
            return problems
        fields = graph.state_model.model_fields
        for role, field in (
            ("input_field", agent.input_field),
            ("output_field", agent.output_field),
        ):
            if field not in fields:
                problems.append(
                    f"agent {name!r}: its graph's state {graph.state_model.__name__} has no "
                    f"field {field!r} ({role}); pass {role}= one of {sorted(fields)}"
                )
        required = [
            f for f, info in fields.items() if info.is_required() and f != agent.input_field
        ]
        if required:
            problems.append(
                f"agent {name!r}: its graph's state {graph.state_model.__name__} requires "
                f"{required}, but a crew only fills {agent.input_field!r} (input_field): give "
                "those fields defaults or choose another input_field"
            )
    return problems


def agent_from_llm(
    name: str,
    llm: LLM,
    system: str,
    description: str = "",
    *,
    max_visits: int | None = None,
    max_tokens: int = 1024,
) -> Agent:
    """A specialist that answers each task with one call of `llm` under `system`."""
    return Agent(
        name=name,
        description=description,
        llm=llm,
        system=system,
        max_visits=max_visits,
        max_tokens=max_tokens,
    )


def agent_from_graph(
    name: str,
    graph: CompiledGraph[Any] | GraphBuilder[Any],
    description: str = "",
    *,
    input_field: str = "task",
    output_field: str = "answer",
    max_visits: int | None = None,
) -> Agent:
    """A specialist that is a whole graph (e.g. a ReAct agent), run as a subgraph per task.

    The task's text goes into `input_field` of the graph's state (every other field keeps its
    default) and, when the graph's run completes, `output_field` is the agent's reply (text as
    is, anything else as JSON). The child run is checkpointed in the crew's store, so a crash
    inside it resumes inside it.
    """
    if isinstance(graph, GraphBuilder):
        graph = graph.compile(store=":memory:")  # rebound to the crew's store when it runs
    return Agent(
        name=name,
        description=description,
        graph=graph,
        input_field=input_field,
        output_field=output_field,
        max_visits=max_visits,
    )


def check_agents(agents: Iterable[Any], *, reserved: Iterable[str], role: str) -> list[str]:
    """Problems with a crew's agents: not agents, duplicate names, reserved names."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    taken = {name_key(r): r for r in (*reserved, START, END)}
    listed = list(agents)
    if not listed:
        problems.append(f"the crew has no {role}s: pass at least one Agent")
    for agent in listed:
        if not isinstance(agent, Agent):
            problems.append(
                f"{agent!r} is not an Agent: build {role}s with agent_from_llm(name, llm, "
                "system) or agent_from_graph(name, graph)"
            )
            continue
        key = name_key(agent.name)
        if key in taken:
            problems.append(
                f"{role} name {agent.name!r} is reserved by the crew ({taken[key]!r}); "
                "rename the agent"
            )
        elif key in seen:
            problems.append(
                f"two {role}s are named {agent.name!r} (names compare without case, '-' and "
                f"'_'; the other is {seen[key]!r}): give each a unique name"
            )
        else:
            seen[key] = agent.name
    return problems


class LogUpdate(TypedDict):
    """An update that only appends to the crew's log."""

    log: list[CrewMessage]


def reply_message(assignment: Assignment, text: str) -> CrewMessage:
    """The agent's reply to `assignment`, addressed to `reply_to` (default: the sender)."""
    return CrewMessage(
        sender=assignment.agent,
        recipient=assignment.reply_to or assignment.sender,
        content=text,
        type=assignment.reply_type,
        metadata=dict(assignment.metadata),
    )


Observe = Callable[[Assignment], bool]
"""Whether an agent's reply to an assignment is remembered as an observation."""


def remember_reply(
    ctx: NodeContext, memory: MemorySpec | None, agent: str, assignment: Assignment, text: str
) -> None:
    """Add an agent's reply to the crew's memory as an observation."""
    remember(
        ctx,
        memory,
        note(assignment.task, f"{agent} answered", text),
        source="observation",
        agent=agent,
    )


def _llm_agent_node(
    agent: Agent, memory: MemorySpec | None = None, observe: Observe | None = None
) -> Any:
    llm = agent.llm
    assert llm is not None

    async def run_agent(assignment: Assignment, ctx: NodeContext) -> LogUpdate:
        system = agent.system
        if memory is not None:
            system = with_memories(system, await recall(ctx, memory, assignment.prompt))
        reply, _ = await complete_turn(
            JournaledLLM(llm, ctx),
            [user(assignment.prompt)],
            system=system,
            max_tokens=agent.max_tokens,
        )
        text = reply.text.strip()
        if memory is not None and (observe is None or observe(assignment)):
            remember_reply(ctx, memory, agent.name, assignment, text)
        said = reply_message(assignment, text)
        if reply.truncated:  # still cut off after the continuations: say so to whoever reads it
            said.metadata["stop_reason"] = "max_tokens"
            said.content = f"{text}\n[cut off at max_tokens={agent.max_tokens}]"
        return {"log": [said]}

    run_agent.__name__ = run_agent.__qualname__ = agent.name
    return run_agent


class AgentRun(BaseModel):
    """The state of the small graph that wraps a graph agent: prepare → agent → report."""

    assignment: Assignment | None = None
    """What the agent is asked (from the crew's state)."""
    prompt: str = ""
    """The assignment's text, handed to the agent's input field."""
    output: Any = None
    """The agent's output field once its run completes."""
    log: Annotated[list[CrewMessage], append] = []
    """The reply, passed back to the crew's log."""


class _PromptUpdate(TypedDict):
    prompt: str


def _graph_agent_app(
    agent: Agent, memory: MemorySpec | None = None, observe: Observe | None = None
) -> CompiledGraph[AgentRun]:
    assert agent.graph is not None

    async def prepare(s: AgentRun) -> _PromptUpdate:
        if s.assignment is None:
            raise ValueError(
                f"graph agent {agent.name!r} was started without an assignment; crews set "
                "`assignment` before they route to it"
            )
        return {"prompt": s.assignment.prompt}

    async def report(s: AgentRun) -> LogUpdate:
        assert s.assignment is not None
        return {"log": [reply_message(s.assignment, _as_text(s.output))]}

    async def report_and_remember(s: AgentRun, ctx: NodeContext) -> LogUpdate:
        assert s.assignment is not None
        text = _as_text(s.output)
        if observe is None or observe(s.assignment):
            remember_reply(ctx, memory, agent.name, s.assignment, text)
        return {"log": [reply_message(s.assignment, text)]}

    g = GraphBuilder(AgentRun, name=f"agent_{agent.name}")
    g.add_node(prepare)
    g.add_node(
        agent.name,
        agent.graph,
        input_map={agent.input_field: "prompt"},
        output_map={"output": agent.output_field},
    )
    g.add_node("report", report if memory is None else report_and_remember)
    g.add_edge(START, "prepare")
    g.add_edge("prepare", agent.name)
    g.add_edge(agent.name, "report")
    g.add_edge("report", END)
    return g.compile(store=":memory:")  # a subgraph runs on its parent's store


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)


def add_assignee(
    g: GraphBuilder[Any],
    agent: Agent,
    *,
    max_visits: int | None = None,
    memory: MemorySpec | None = None,
    observe: Observe | None = None,
) -> None:
    """Add `agent` as a node that takes an `Assignment` and appends its reply to the log.

    A model agent's node receives the assignment as its `Send` payload; a graph agent's node is
    its wrapping subgraph, which reads `assignment` from the state (see `send_to`). With
    `memory`, a model agent recalls memories relevant to its assignment before its call, and
    every agent's reply is remembered as an observation (only those `observe` accepts).
    """
    if agent.llm is not None:
        g.add_node(agent.name, _llm_agent_node(agent, memory, observe), max_visits=max_visits)
    else:
        g.add_node(
            agent.name,
            _graph_agent_app(agent, memory, observe),
            input_map={"assignment": "assignment"},
            output_map={"log": "log"},
            max_visits=max_visits,
        )


def send_to(agent: Agent, assignment: Assignment, state: CrewState) -> Send:
    """The `Send` that runs `agent` on `assignment` (added with `add_assignee`).

    A subgraph node's Send payload is a whole state of the parent graph, so a graph agent gets
    the crew's state with `assignment` set; a model agent gets just the assignment.
    """
    if agent.llm is not None:
        return Send(agent.name, assignment)
    return Send(agent.name, state.model_copy(update={"assignment": assignment}))
