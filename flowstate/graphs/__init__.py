"""Prebuilt graphs: a ReAct agent, three planners and multi-agent crews.

Each builder returns a `GraphBuilder`: compile it (`.compile(store="runs.db")`) to run it, or
add the compiled graph as a subgraph node of your own graph. Every model and tool call goes
through the node's journal, so these graphs resume after a crash without calling the model
again for finished turns, and replay offline.

    from flowstate.graphs import react_agent, dag_planner

    agent = react_agent(llm, [search, calculator], max_steps=8).compile(store="runs.db")
    agent.run_sync({"task": "How many people live in Lyon and Nantes together?"})

    planner = dag_planner(llm, executor=react_agent(llm, [search])).compile(store="runs.db")
    planner.run_sync({"goal": "Compare the populations of Lyon and Nantes"})
"""

import inspect as _inspect

from ._common import Executor, ExecutorFn, MemorySpec
from ._crew_spec import CREW_KINDS, CrewSpecError, build_with_llm, crew_from_spec
from ._crews import (
    Agent,
    CrewMessage,
    agent_from_llm,
    coordinator_crew,
    debate_crew,
    orchestrator_crew,
    pipeline_crew,
)
from ._parsing import (
    DagItem,
    ReActParse,
    parse_dag_plan,
    parse_list,
    parse_react,
    parse_tool_input,
    parse_yes_no,
)
from ._planners import (
    DecomposeJob,
    HierarchicalState,
    Plan,
    PlannerState,
    PlannerStatus,
    PlanStatus,
    PlanStep,
    StepJob,
    StepOutcome,
    TaskNode,
    dag_planner,
    dag_problems,
    hierarchical_planner,
    sequential_planner,
)
from ._react import (
    FinalAnswer,
    Observation,
    ReActAction,
    ReActState,
    ReActStatus,
    ReActStep,
    ToolAction,
    react_agent,
)

__all__ = [
    "CREW_KINDS",
    "Agent",
    "CrewMessage",
    "CrewSpecError",
    "DagItem",
    "DecomposeJob",
    "Executor",
    "ExecutorFn",
    "FinalAnswer",
    "HierarchicalState",
    "MemorySpec",
    "Observation",
    "Plan",
    "PlanStatus",
    "PlanStep",
    "PlannerState",
    "PlannerStatus",
    "ReActAction",
    "ReActParse",
    "ReActState",
    "ReActStatus",
    "ReActStep",
    "StepJob",
    "StepOutcome",
    "TaskNode",
    "ToolAction",
    "agent_from_llm",
    "build_with_llm",
    "coordinator_crew",
    "crew_from_spec",
    "dag_planner",
    "dag_problems",
    "debate_crew",
    "hierarchical_planner",
    "orchestrator_crew",
    "parse_dag_plan",
    "parse_list",
    "parse_react",
    "parse_tool_input",
    "parse_yes_no",
    "pipeline_crew",
    "react_agent",
    "sequential_planner",
]

_CREW_NAMES = frozenset(
    {
        "Agent",
        "CrewMessage",
        "agent_from_llm",
        "coordinator_crew",
        "debate_crew",
        "orchestrator_crew",
        "pipeline_crew",
    }
)


# Show the public path in reprs and tracebacks (flowstate.graphs.Plan, not ..._planners.Plan).
# The crews' names are left to their own module.
def _show_public_path() -> None:
    for name in __all__:
        obj = globals()[name]
        if name not in _CREW_NAMES and (isinstance(obj, type) or _inspect.isfunction(obj)):
            obj.__module__ = __name__


_show_public_path()
del _show_public_path
