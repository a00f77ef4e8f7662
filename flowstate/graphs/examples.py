"""Ready-made crews, each built from one model, so the command line can run them by name:

    flowstate run flowstate.graphs.examples:research_crew --llm anthropic:claude-sonnet-4-5 \\
        --input '{"task": "Compare SQLite and PostgreSQL for a small web app"}'

Every builder takes only `llm` and returns an uncompiled `GraphBuilder`, like the crews they
are made of (`orchestrator_crew`, `pipeline_crew`, `coordinator_crew`, `debate_crew`). They
are starting points: copy one and change its agents, or describe a crew in a spec file
(see `flowstate.graphs.crew_from_spec`).
"""

from __future__ import annotations

from typing import Any

from flowstate.engine import GraphBuilder
from flowstate.llm import LLM

from ._crew_agents import agent_from_llm
from ._crew_coordinator import coordinator_crew
from ._crew_debate import debate_crew
from ._crew_orchestrator import orchestrator_crew
from ._crew_pipeline import pipeline_crew

__all__ = ["panel_debate", "research_crew", "support_coordinator", "writing_pipeline"]


def research_crew(llm: LLM) -> GraphBuilder[Any]:
    """An orchestrator picks among a fact-finder, a sceptic and an explainer; a synthesiser
    combines their answers."""
    return orchestrator_crew(
        llm,
        [
            agent_from_llm(
                "facts",
                llm,
                "List the facts the request depends on, each with how sure you are.",
                "finds and lists the relevant facts",
            ),
            agent_from_llm(
                "sceptic",
                llm,
                "Name the weak points, risks and counter-arguments of the obvious answer.",
                "looks for risks and counter-arguments",
            ),
            agent_from_llm(
                "explainer",
                llm,
                "Explain the answer plainly to a newcomer, with one example.",
                "explains plainly, with an example",
            ),
        ],
        name="research_crew",
    )


def writing_pipeline(llm: LLM) -> GraphBuilder[Any]:
    """Outline, then draft, then edit: each stage works on the previous stage's output."""
    return pipeline_crew(
        [
            agent_from_llm("outliner", llm, "Write a short outline (at most 6 points)."),
            agent_from_llm("drafter", llm, "Write the text that follows this outline."),
            agent_from_llm("editor", llm, "Tighten this text; keep its meaning; fix errors."),
        ],
        name="writing_pipeline",
    )


def support_coordinator(llm: LLM) -> GraphBuilder[Any]:
    """A coordinator delegates a support request to billing or technical help, one handoff
    at a time, and answers."""
    return coordinator_crew(
        llm,
        [
            agent_from_llm(
                "billing",
                llm,
                "Answer billing questions: plans, invoices, refunds.",
                "billing, invoices and refunds",
            ),
            agent_from_llm(
                "technical",
                llm,
                "Diagnose technical problems step by step.",
                "technical problems and errors",
            ),
        ],
        name="support_coordinator",
    )


def panel_debate(llm: LLM) -> GraphBuilder[Any]:
    """Three debaters, one round of refinement, one synthesised answer."""
    return debate_crew(llm, n_agents=3, rounds=1, name="panel_debate")
