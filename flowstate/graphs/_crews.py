"""Crews: several agents working on one request, each crew an ordinary graph over its own state.

    orchestrator_crew(llm, specialists)     a model picks specialists; they run in parallel
    debate_crew(llm, n_agents=3, rounds=2)  independent answers, bounded rounds of refinement
    pipeline_crew(agents)                   a fixed sequence, each stage on the previous output
    coordinator_crew(llm, agents)           typed delegation, one handoff at a time, bounded

Each returns a `GraphBuilder`; compile it like any graph. Agents are built with
`agent_from_llm(name, llm, system, description)` or `agent_from_graph(name, compiled_graph)`.
Every model call is a journaled effect, so a crew run resumes after a crash without calling a
model twice and replays offline. The crew's conversation is the `log` field: a list of typed
`CrewMessage`s, and anything the crew drops or refuses is in it as a `critique`. On a thread
(one run per turn) `crew_turn(previous_state, message)` is the next turn's input.
"""

from ._crew_agents import Agent, agent_from_graph, agent_from_llm
from ._crew_common import SYNTHESISER_SYSTEM, crew_turn
from ._crew_coordinator import COORDINATOR_SYSTEM, CoordinatorState, coordinator_crew
from ._crew_debate import DEBATER_SYSTEM, DebateState, debate_crew
from ._crew_models import (
    Assignment,
    CrewMessage,
    CrewState,
    CrewStatus,
    Delegate,
    Delegation,
    MessageType,
)
from ._crew_orchestrator import ORCHESTRATOR_SYSTEM, OrchestratorState, orchestrator_crew
from ._crew_parse import parse_choices, parse_decision
from ._crew_pipeline import PipelineState, pipeline_crew

__all__ = [
    "COORDINATOR_SYSTEM",
    "DEBATER_SYSTEM",
    "ORCHESTRATOR_SYSTEM",
    "SYNTHESISER_SYSTEM",
    "Agent",
    "Assignment",
    "CoordinatorState",
    "CrewMessage",
    "CrewState",
    "CrewStatus",
    "DebateState",
    "Delegate",
    "Delegation",
    "MessageType",
    "OrchestratorState",
    "PipelineState",
    "agent_from_graph",
    "agent_from_llm",
    "coordinator_crew",
    "crew_turn",
    "debate_crew",
    "orchestrator_crew",
    "parse_choices",
    "parse_decision",
    "pipeline_crew",
]
