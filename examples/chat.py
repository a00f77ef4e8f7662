"""A chat on a thread: a ReAct agent answers one message per turn, remembering the earlier turns.

Runs offline by default, with a scripted model that plays the agent; with an API key the same
chat runs on Claude:

    python examples/chat.py
    python examples/chat.py --db chat.db --thread alice "How many people live in Lille?"
    python examples/chat.py --db chat.db --thread alice "And in Paris?"      # goes on
    ANTHROPIC_API_KEY=sk-ant-... python examples/chat.py --llm anthropic:claude-sonnet-4-5
    flowstate threads alice --db chat.db

Each message is a turn of the thread: a run that starts from the last turn's final state with
the message appended to the conversation (`react_turn`), so the third question ("both
together?") is answered from numbers the agent looked up in the first two turns. Every turn is
an ordinary run: checkpointed per node, resumable after a crash, replayable offline.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from flowstate import ThreadBusy
from flowstate.graphs import ReActState, react_agent, react_turn
from flowstate.llm import (
    LLM,
    LLMError,
    LLMRequest,
    ScriptedLLM,
    ToolResultBlock,
    llm_from_spec,
    tool,
)

POPULATION = {"Lyon": 522_250, "Nantes": 323_204, "Lille": 236_710, "Paris": 2_102_650}
"""City populations (INSEE, 2021) that the `population` tool knows."""

MESSAGES = [
    "How many people live in Lyon?",
    "And in Nantes?",
    "How many in both cities together?",
]
SYSTEM = (
    "You answer questions about French cities. Look numbers up with the population tool and "
    "add with the add tool; never guess. Answer in one sentence."
)


@tool
def population(city: str) -> int:
    """Population of a French city (Lyon, Nantes, Lille or Paris)."""
    if city not in POPULATION:
        raise KeyError(f"no data for {city!r}; known cities: {', '.join(POPULATION)}")
    return POPULATION[city]


@tool
def add(a: int, b: int) -> int:
    """Add two integers exactly."""
    return a + b


def _results(messages: list[Any]) -> list[int]:
    return [
        int(b.content)
        for m in messages
        for b in m.blocks
        if isinstance(b, ToolResultBlock) and not b.is_error
    ]


def offline_model(request: LLMRequest) -> dict[str, Any]:
    """A scripted stand-in for the model. It sees the whole conversation, earlier turns
    included: "together" adds the last two numbers looked up, in whichever turn."""
    msgs = request.messages
    asked = max(i for i, m in enumerate(msgs) if m.role == "user" and m.text.strip())
    question = msgs[asked].text.lower()
    this_turn = _results(msgs[asked + 1 :])
    call_id = f"toolu_{len(msgs)}"
    if "together" in question:
        if this_turn:
            return {"text": f"Together they have {this_turn[-1]:,} people."}
        a, b = _results(msgs)[-2:]
        return {
            "text": "I add the two numbers from before.",
            "tool_calls": [{"name": "add", "input": {"a": a, "b": b}, "id": call_id}],
        }
    city = next((c for c in POPULATION if c.lower() in question), None)
    if city is None:
        return {"text": f"I only know {', '.join(POPULATION)}."}
    if this_turn:
        return {"text": f"{city} has {this_turn[-1]:,} people."}
    return {
        "text": f"I look up {city}.",
        "tool_calls": [{"name": "population", "input": {"city": city}, "id": call_id}],
    }


def build(llm: LLM) -> Any:
    return react_agent(llm, [population, add], max_steps=6, system=SYSTEM)


def graph() -> Any:
    """The offline agent, for `flowstate graph examples/chat.py:graph`."""
    return build(ScriptedLLM(offline_model))


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="*", help="the user's messages, one turn each")
    parser.add_argument("--thread", default="chat", help="the thread (conversation) id")
    parser.add_argument("--db", default=":memory:", help="SQLite file or postgresql:// URL")
    parser.add_argument("--llm", default="scripted", help="'scripted' or anthropic:MODEL")
    args = parser.parse_args(argv)
    try:
        llm: Any = ScriptedLLM(offline_model) if args.llm == "scripted" else llm_from_spec(args.llm)
    except LLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = build(llm).compile(store=args.db)
    state: ReActState | None = None
    try:
        for text in args.messages or MESSAGES:
            print(f"you:   {text}")
            try:
                on_thread = bool(app.store.thread_runs(args.thread))
                turn = react_turn(text) if on_thread else {"task": text}
                result = await app.run(turn, thread_id=args.thread)
            except ThreadBusy as exc:  # its last turn is paused, failed or still running
                print(f"error: {exc}", file=sys.stderr)
                return 1
            state = result.state
            print(f"agent: {state.answer if state.answer is not None else state.error}")
    finally:
        if hasattr(llm, "aclose"):
            await llm.aclose()
    thread = app.thread(args.thread)
    held = len(state.messages) if state is not None else 0
    print(f"thread {args.thread!r}: {len(thread.turns)} turns, {held} messages")
    return 0 if state is not None and state.status == "answered" else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
