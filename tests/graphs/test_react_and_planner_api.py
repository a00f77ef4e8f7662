"""The public surface of `flowstate.graphs` is pinned, and every builder returns a builder."""

from __future__ import annotations

import flowstate.graphs
from flowstate import GraphBuilder
from flowstate.graphs import (
    dag_planner,
    hierarchical_planner,
    react_agent,
    sequential_planner,
)
from flowstate.llm import ScriptedLLM

CREWS = {
    "Agent",
    "CrewMessage",
    "agent_from_llm",
    "coordinator_crew",
    "crew_turn",
    "debate_crew",
    "orchestrator_crew",
    "pipeline_crew",
}

AGENTS_AND_PLANNERS = {
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
    "dag_planner",
    "dag_problems",
    "hierarchical_planner",
    "parse_dag_plan",
    "parse_list",
    "parse_react",
    "parse_tool_input",
    "parse_yes_no",
    "react_agent",
    "react_turn",
    "sequential_planner",
}


CREW_SPECS = {"CREW_KINDS", "CrewSpecError", "build_with_llm", "crew_from_spec"}


def test_graphs_all_is_pinned() -> None:
    names = flowstate.graphs.__all__
    assert len(set(names)) == len(names)
    assert set(names) == AGENTS_AND_PLANNERS | CREWS | CREW_SPECS
    for name in names:
        assert not name.startswith("_") and hasattr(flowstate.graphs, name), name
    assert flowstate.graphs.Plan.__module__ == "flowstate.graphs"
    assert flowstate.graphs.react_agent.__module__ == "flowstate.graphs"


def test_builders_return_graph_builders_that_compile_and_draw() -> None:
    llm = ScriptedLLM(["x"])
    for build in (react_agent, sequential_planner, dag_planner, hierarchical_planner):
        builder = build(llm)
        assert isinstance(builder, GraphBuilder)
        diagram = builder.compile(store=":memory:").to_mermaid()
        assert diagram.startswith("flowchart")
    assert react_agent(llm, name="helper").name == "helper"
    assert sequential_planner(llm, name="p").name == "p"
