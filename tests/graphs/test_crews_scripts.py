"""Scripted models and crews shared by the crew tests (no tests here).

Every scripted model answers as a function of the request, keyed on the system prompt (which
names the role or the agent) and the prompt, so a run is deterministic whatever order parallel
agents run in, and a resumed or replayed run would get the same answers. `Model.broken` makes
every call raise, as a failing provider would: a test breaks a model to fail a node (and fixes
it to resume), or breaks all of them to prove a replay calls nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext
from flowstate.graphs._crews import (
    Agent,
    agent_from_graph,
    agent_from_llm,
    coordinator_crew,
    debate_crew,
    orchestrator_crew,
    pipeline_crew,
)
from flowstate.llm import JournaledLLM, LLMError, LLMRequest, ScriptedLLM, user

Respond = Callable[[LLMRequest], Any]


class Model:
    """A `ScriptedLLM` answering with `respond(request)`, which can be broken and fixed."""

    def __init__(self, name: str, respond: Respond) -> None:
        self.name = name
        self.respond = respond
        self.broken = False
        self.llm = ScriptedLLM(self._answer, model=f"scripted-{name}")

    def _answer(self, request: LLMRequest) -> Any:
        if self.broken:
            raise LLMError(f"{self.name}: the provider is overloaded (scripted)", status_code=529)
        return self.respond(request)

    @property
    def requests(self) -> list[LLMRequest]:
        return self.llm.requests


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def specialist(name: str) -> Respond:
    """A specialist that answers `<name> on <first line of its task>`."""

    def respond(request: LLMRequest) -> str:
        return f"{name} on {first_line(request.messages[-1].text)}"

    return respond


def roster_names(system: str | None, heading: str) -> list[str]:
    """The `- name: description` lines after `heading` in a system prompt."""
    block = (system or "").split(heading, 1)[-1]
    names = []
    for line in block.splitlines()[1:]:
        m = re.match(r"- ([\w-]+): ", line)
        if not m:
            break
        names.append(m.group(1))
    return names


def round_robin_coordinator(request: LLMRequest) -> str:
    """A coordinator that delegates to every agent of its roster, in order, then answers with
    every result. It reads the results from its turn's prompt (the first message)."""
    names = roster_names(request.system, "Agents:")
    prompt = request.messages[0].text
    results = dict(re.findall(r"\] ([\w-]+) → you: (.*)", prompt))
    for name in names:
        if name not in results:
            return f"DELEGATE {name}: part of the task for {name}\nCONTEXT: be brief"
    return "ANSWER: " + "; ".join(results[n] for n in names)


def synthesiser(request: LLMRequest) -> str:
    """Joins the answers it was given: `synthesis of [a] ...; [b] ...`."""
    found = re.findall(r"^\[([\w-]+)\]\n(.*)$", request.messages[-1].text, re.MULTILINE)
    return "synthesis of " + "; ".join(f"[{n}] {a}" for n, a in found)


def debater(request: LLMRequest) -> str:
    """`<name> r<round>: 42`, and in later rounds the names of the others it read."""
    name = re.match(r"You are ([\w-]+)", request.system or "")
    me = name.group(1) if name else "?"
    prompt = request.messages[-1].text
    round_no = re.search(r"Round (\d+) of", prompt)
    if round_no is None:
        return f"{me} r0: 42"
    others = re.findall(r"^\[([\w-]+)\]$", prompt, re.MULTILINE)
    return f"{me} r{round_no.group(1)}: 42 (read {', '.join(others)})"


# -- crews -------------------------------------------------------------------------------------


class Crew:
    """A crew builder with its scripted models, by role (`orchestrator`, `researcher`, …)."""

    def __init__(self, builder: GraphBuilder[Any], models: dict[str, Model], task: str) -> None:
        self.builder = builder
        self.models = models
        self.task = task
        self.input = {"task": task}

    def compile(self, store: Any = ":memory:") -> Any:
        return self.builder.compile(store=store)

    def break_all(self, broken: bool = True) -> None:
        for m in self.models.values():
            m.broken = broken

    def calls(self) -> dict[str, int]:
        return {k: len(m.requests) for k, m in self.models.items()}


def specialists(*names: str) -> tuple[list[Agent], dict[str, Model]]:
    models = {n: Model(n, specialist(n)) for n in names}
    agents = [
        agent_from_llm(n, models[n].llm, f"You are the {n}.", f"the {n} of the crew") for n in names
    ]
    return agents, models


def orchestrator_world(
    choose: Respond | str = "researcher: find the facts\nwriter: write the summary",
    names: tuple[str, ...] = ("researcher", "writer", "critic"),
    **kwargs: Any,
) -> Crew:
    agents, models = specialists(*names)
    respond = choose if callable(choose) else (lambda request, text=choose: text)
    models["orchestrator"] = Model("orchestrator", respond)
    models["synthesiser"] = Model("synthesiser", synthesiser)
    builder = orchestrator_crew(
        models["orchestrator"].llm, agents, synthesiser=models["synthesiser"].llm, **kwargs
    )
    return Crew(builder, models, "How many people live in Lyon?")


def debate_world(n_agents: int = 3, rounds: int = 2) -> Crew:
    models = {"debaters": Model("debaters", debater), "synthesiser": Model("synth", synthesiser)}
    builder = debate_crew(
        models["debaters"].llm,
        n_agents=n_agents,
        rounds=rounds,
        synthesiser=models["synthesiser"].llm,
    )
    return Crew(builder, models, "What is 6 * 7?")


def pipeline_world(names: tuple[str, ...] = ("researcher", "writer", "editor")) -> Crew:
    agents, models = specialists(*names)
    return Crew(pipeline_crew(agents), models, "Lyon")


def coordinator_world(
    names: tuple[str, ...] = ("researcher", "writer"),
    coordinator: Respond = round_robin_coordinator,
    **kwargs: Any,
) -> Crew:
    agents, models = specialists(*names)
    models["coordinator"] = Model("coordinator", coordinator)
    builder = coordinator_crew(models["coordinator"].llm, agents, **kwargs)
    return Crew(builder, models, "Write a note on Lyon.")


# -- a graph agent -----------------------------------------------------------------------------


class CalcState(BaseModel):
    """The state of a tiny graph agent: reads `task`, writes `answer` (as react_agent does)."""

    task: str
    answer: str | None = None
    steps: int = 0


def calculator_graph(model: Model) -> GraphBuilder[CalcState]:
    """Two nodes: `think` asks the model, `check` writes the answer."""

    async def think(s: CalcState, ctx: NodeContext) -> dict[str, Any]:
        reply = await JournaledLLM(model.llm, ctx).complete([user(s.task)], system="calculator")
        return {"answer": reply.text, "steps": s.steps + 1}

    async def check(s: CalcState) -> dict[str, Any]:
        return {"answer": f"checked: {s.answer}", "steps": s.steps + 1}

    g = GraphBuilder(CalcState, name="calculator")
    g.add_node(think).add_node(check)
    g.add_edge(START, "think").add_edge("think", "check").add_edge("check", END)
    return g


def calculator_agent(model: Model) -> Agent:
    return agent_from_graph("calculator", calculator_graph(model), "does arithmetic exactly")
