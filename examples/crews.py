"""Four crews of agents on one question: orchestrator, debate, pipeline and coordinator.

Runs offline by default, with a scripted model that plays every part (the orchestrator, the
specialists, the debaters, the coordinator and the synthesiser, told apart by their system
prompts). With an API key the same crews run on Claude:

    python examples/crews.py
    python examples/crews.py --crew coordinator --task "Lyon or Nantes for a bakery?"
    ANTHROPIC_API_KEY=sk-ant-... python examples/crews.py --llm anthropic:claude-sonnet-4-5
    flowstate graph examples/crews.py:graph        # the coordinator crew's diagram

Each crew is an ordinary graph: every model call is a journaled effect and every agent's turn
a checkpointed node, so `--db runs.db` keeps the runs for `flowstate show` / `resume` / `replay`.
The script prints each crew's message log (delegations, results, anything the crew refused),
its status and answer, and the tokens it used.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

from flowstate import GraphBuilder
from flowstate.graphs._crews import (
    Agent,
    CrewMessage,
    agent_from_llm,
    coordinator_crew,
    debate_crew,
    orchestrator_crew,
    pipeline_crew,
)
from flowstate.llm import LLM, LLMError, LLMRequest, ScriptedLLM, llm_from_spec
from flowstate.nodes import run_usage

TASK = "Should a 20-person software company open its second office in Lyon or in Nantes?"

CREWS = ("orchestrator", "debate", "pipeline", "coordinator")


def specialists(llm: LLM) -> list[Agent]:
    return [
        agent_from_llm(
            "economist",
            llm,
            "You are the economist of a small advisory team. Compare costs, salaries and the "
            "local market for tech talent. Be concrete and brief (three sentences at most).",
            "costs, salaries, the job market",
        ),
        agent_from_llm(
            "geographer",
            llm,
            "You are the geographer of a small advisory team. Compare transport links, travel "
            "times to Paris and quality of life. Be concrete and brief (three sentences at "
            "most).",
            "transport, travel times, quality of life",
        ),
        agent_from_llm(
            "writer",
            llm,
            "You are the writer of a small advisory team. Turn the notes you are given into a "
            "clear recommendation of at most four sentences.",
            "turns notes into a clear recommendation",
        ),
    ]


def build(kind: str, llm: LLM) -> GraphBuilder[Any]:
    agents = specialists(llm)
    if kind == "orchestrator":
        return orchestrator_crew(llm, agents[:2])
    if kind == "debate":
        return debate_crew(llm, n_agents=3, rounds=1)
    if kind == "pipeline":
        return pipeline_crew(agents)
    if kind == "coordinator":
        return coordinator_crew(llm, agents, max_delegations=6)
    raise ValueError(f"unknown crew {kind!r}: use one of {', '.join(CREWS)}")


# -- the offline model ---------------------------------------------------------------------------

NOTES = {
    "economist": (
        "Nantes is about 10% cheaper for office space and salaries; Lyon has twice the pool of "
        "experienced developers and more tech employers competing for them."
    ),
    "geographer": (
        "Lyon is 2h from Paris by TGV and has an international airport; Nantes is 2h10 from "
        "Paris and has the calmer, cheaper city life staff often prefer."
    ),
}


def offline_model(request: LLMRequest) -> dict[str, Any]:
    """A scripted stand-in for the model, playing the part its system prompt gives it."""
    system = request.system or ""
    prompt = request.messages[0].text
    usage = {"input_tokens": 20 + len(prompt) // 4, "output_tokens": 40}
    return {"text": _offline_text(system, prompt), "usage": usage}


def _offline_text(system: str, prompt: str) -> str:
    if "orchestrator of a crew" in system:
        return (
            "economist: compare the costs and the talent market of Lyon and Nantes\n"
            "geographer: compare transport links and quality of life in Lyon and Nantes"
        )
    if "coordinator of a crew" in system:
        results = dict(re.findall(r"\] (\w+) → you: (.*)", prompt))
        for name in ("economist", "geographer"):
            if name not in results:
                return f"DELEGATE {name}: compare Lyon and Nantes for a 20-person tech office"
        if "writer" not in results:
            return (
                "DELEGATE writer: write the recommendation, Lyon or Nantes\n"
                f"CONTEXT: economist: {results['economist']} geographer: {results['geographer']}"
            )
        return f"ANSWER: {results['writer']}"
    if "synthesiser of a crew" in system:
        return (
            "Open the office in Lyon: its larger pool of experienced developers and its rail "
            "and air links outweigh the roughly 10% lower costs of Nantes."
        )
    debater = re.match(r"You are debater_(\d+)", system)
    if debater:
        if "Round" not in prompt and debater.group(1) == "2":
            return "Nantes: lower costs and a calmer city will help a small team hire and stay."
        return "Lyon: hiring experienced developers is the hard part, and Lyon has twice as many."
    for name, note in NOTES.items():
        if system.startswith(f"You are the {name}"):
            return note
    if system.startswith("You are the writer"):
        return (
            "Choose Lyon. Nantes is about 10% cheaper, but a growing team's hardest problem is "
            "hiring, and Lyon has twice as many experienced developers, faster links to Paris "
            "and an international airport."
        )
    return "I have nothing to add."


def graph() -> GraphBuilder[Any]:
    """The offline coordinator crew, for `flowstate graph/run examples/crews.py:graph`."""
    return build("coordinator", ScriptedLLM(offline_model))


# -- running -------------------------------------------------------------------------------------


def print_log(log: list[CrewMessage]) -> None:
    for m in log:
        text = " ".join(m.content.split())
        text = text if len(text) <= 110 else text[:109] + "…"
        extra = f" {m.metadata}" if m.type == "critique" else ""
        print(f"  {m.sender:>12} → {m.recipient:<12} [{m.type}]{extra} {text}")


async def run_crew(kind: str, llm: LLM, task: str, db: str) -> bool:
    app = build(kind, llm).compile(store=db)
    result = await app.run({"task": task}, max_steps=200)
    state = result.state
    print(f"\n== {kind} crew: run {result.run_id} {result.status}, status {state.status}")
    print_log(state.log)
    print(f"  answer: {state.answer or '(none)'}")
    tokens = run_usage(app.store, result.run_id)
    print(f"  tokens: {tokens.get('input_tokens', 0)} in, {tokens.get('output_tokens', 0)} out")
    return state.status == "done"


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--crew", choices=[*CREWS, "all"], default="all")
    parser.add_argument(
        "--llm",
        default="scripted",
        help="'scripted' (offline, the default) or anthropic:MODEL, e.g. "
        "anthropic:claude-sonnet-4-5 (needs ANTHROPIC_API_KEY)",
    )
    parser.add_argument("--db", default=":memory:", help="SQLite file for the checkpoints")
    args = parser.parse_args(argv)

    llm: Any
    try:
        llm = ScriptedLLM(offline_model) if args.llm == "scripted" else llm_from_spec(args.llm)
    except LLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"task: {args.task}\nmodel: {llm!r}")
    ok = True
    try:
        for kind in CREWS if args.crew == "all" else (args.crew,):
            ok = await run_crew(kind, llm, args.task, args.db) and ok
    finally:
        if hasattr(llm, "aclose"):
            await llm.aclose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
