"""Reflection memory: cadence, explicit awaited reflect, insight parsing, mixed retrieval."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from flowstate.memory import (
    MemoryConfigError,
    MemoryOp,
    MemoryStore,
    ReflectionError,
    ReflectionMemory,
    parse_insights,
)

from ._helpers import FakeClock
from .conftest import Location


@dataclass
class Reply:
    text: str


class FakeLLM:
    """An LLM-like object: async complete(messages, *, system=None, **kw) -> .text."""

    def __init__(self, reply: str = "- users prefer short answers\n2. deploys fail on fridays"):
        self.reply = reply
        self.calls: list[dict[str, Any]] = []

    async def complete(
        self, messages: list[dict[str, str]], *, system: str | None = None, **kw: Any
    ) -> Reply:
        self.calls.append({"messages": messages, "system": system, **kw})
        return Reply(self.reply)


def test_cadence_every_n_additions(store: MemoryStore, clock: FakeClock) -> None:
    llm = FakeLLM()
    memory = store.memory("reflection", "agent", every=3, llm=llm, clock=clock)
    for n in range(2):
        clock.advance(1)
        memory.add(f"event {n}")
        assert not memory.needs_reflection
    memory.add("event 2")
    assert memory.needs_reflection
    assert llm.calls == []  # add never reflects by itself: no background task

    insights = asyncio.run(memory.reflect())

    assert [i.content for i in insights] == [
        "users prefer short answers",
        "deploys fail on fridays",
    ]
    assert not memory.needs_reflection
    assert len(llm.calls) == 1
    (call,) = llm.calls
    assert call["system"]
    (message,) = call["messages"]
    assert message["role"] == "user"
    assert "event 0" in message["content"] and "event 2" in message["content"]
    for entry in insights:
        assert entry.kind == "reflection" and entry.namespace == "agent"
        assert len(entry.metadata["sources"]) == 3  # type: ignore[arg-type]

    for n in range(3, 5):
        memory.add(f"event {n}")
        assert not memory.needs_reflection
    memory.add("event 5")
    assert memory.needs_reflection
    asyncio.run(memory.reflect())
    assert "event 0" not in llm.calls[1]["messages"][0]["content"]
    assert "event 5" in llm.calls[1]["messages"][0]["content"]


def test_reflect_with_nothing_pending_calls_no_llm(store: MemoryStore) -> None:
    llm = FakeLLM()
    memory = store.memory("reflection", "agent", every=2, llm=llm)
    assert asyncio.run(memory.reflect()) == []
    assert llm.calls == []


def test_complete_fn_routes_the_call(store: MemoryStore) -> None:
    prompts: list[str] = []

    async def complete_fn(prompt: str) -> str:
        prompts.append(prompt)
        return "1) one insight"

    memory = store.memory("reflection", "agent", every=1, complete_fn=complete_fn)
    memory.add("it rained all day")
    assert memory.needs_reflection
    (insight,) = asyncio.run(memory.reflect())
    assert insight.content == "one insight"
    assert len(prompts) == 1 and "it rained all day" in prompts[0]


def test_cadence_survives_a_restart(store: MemoryStore, location: Location) -> None:
    memory = store.memory("reflection", "agent", every=2, llm=FakeLLM())
    memory.add("a")
    memory.add("b")
    asyncio.run(memory.reflect())
    memory.add("c")
    reopened = location.open().memory("reflection", "agent", every=2, llm=FakeLLM())
    assert [e.content for e in reopened.pending()] == ["c"]
    assert not reopened.needs_reflection
    reopened.add("d")
    assert reopened.needs_reflection


def test_buffered_reflection_is_checkpointed_with_the_step(store: MemoryStore) -> None:
    ops: list[MemoryOp] = []
    memory = store.memory("reflection", "agent", every=2, llm=FakeLLM(), buffer=ops)
    memory.add("a")
    memory.add("b")
    assert memory.needs_reflection
    asyncio.run(memory.reflect())
    assert not memory.needs_reflection  # reads see the buffered reflections
    assert store.counts() == {}  # nothing committed yet
    store.commit(ops)
    assert store.counts() == {("agent", "episodic"): 2, ("agent", "reflection"): 2}
    committed = store.memory("reflection", "agent", every=2, llm=FakeLLM())
    assert not committed.needs_reflection


def test_no_llm_and_empty_reply_are_clear_errors(store: MemoryStore) -> None:
    memory = store.memory("reflection", "agent", every=1)
    memory.add("x")
    with pytest.raises(ReflectionError, match=r"FSM401.*llm=.*complete_fn="):
        asyncio.run(memory.reflect())
    silent = store.memory("reflection", "agent", every=1, llm=FakeLLM("Insights:\n\n   \n"))
    with pytest.raises(ReflectionError, match=r"FSM402.*no insight lines"):
        asyncio.run(silent.reflect())
    assert silent.needs_reflection  # nothing was stored, so it is still pending


def test_configuration_is_validated(store: MemoryStore) -> None:
    async def fn(prompt: str) -> str:
        return prompt

    with pytest.raises(MemoryConfigError, match="both llm= and complete_fn="):
        store.memory("reflection", "a", llm=FakeLLM(), complete_fn=fn)
    with pytest.raises(MemoryConfigError, match="every=0"):
        store.memory("reflection", "a", every=0)
    with pytest.raises(MemoryConfigError, match=r"no complete\(\) method"):
        store.memory("reflection", "a", llm=object())  # type: ignore[call-overload]


def test_parse_insights_strips_bullets_and_numbering() -> None:
    text = """Here are the insights:
    - dash bullet
    * star bullet
    • dot bullet
    1. numbered
    2) paren numbered
    (3) wrapped number
    a) lettered
    **bold insight**
    plain line
    - dash bullet
    """
    assert parse_insights(text) == [
        "dash bullet",
        "star bullet",
        "dot bullet",
        "numbered",
        "paren numbered",
        "wrapped number",
        "lettered",
        "bold insight",
        "plain line",
    ]


def test_retrieve_mixes_reflections_with_base_entries(store: MemoryStore) -> None:
    llm = FakeLLM("the deploy pipeline is fragile\nthe deploy needs a rollback plan")
    memory: ReflectionMemory = store.memory("reflection", "agent", every=3, llm=llm)
    for text in ["deploy failed at step 3", "deploy failed again", "lunch was good"]:
        memory.add(text)
    asyncio.run(memory.reflect())
    results = memory.retrieve("deploy", k=4)
    kinds = [r.entry.kind for r in results]
    assert kinds.count("reflection") == 2 and kinds.count("episodic") == 2
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    # When the base has too few entries, reflections fill the remaining slots.
    assert len(memory.retrieve("deploy", k=5)) == 5
    assert len(memory.retrieve("deploy", k=1)) == 1


def test_inspect_and_clear_cover_both_kinds(store: MemoryStore) -> None:
    memory = store.memory("reflection", "agent", every=1, llm=FakeLLM("insight"))
    memory.add("event")
    asyncio.run(memory.reflect())
    assert [e.kind for e in memory.inspect()] == ["episodic", "reflection"]
    assert [e.content for e in memory.reflections()] == ["insight"]
    memory.clear()
    assert memory.inspect() == [] and store.counts() == {}
