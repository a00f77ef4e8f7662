"""Composite memory: routing by kind, one documented score, no duplicates."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from flowstate.memory import (
    CompositeMemory,
    HashingEmbedder,
    MemoryConfigError,
    MemoryKind,
    MemoryOp,
    MemoryStore,
)

from ._helpers import FakeClock


def test_add_routes_by_kind(store: MemoryStore) -> None:
    memory = store.composite("agent")
    assert memory.kinds == ["working", "episodic", "semantic"]
    assert memory.add("default goes to episodic").kind == "episodic"
    assert memory.add("scratch", kind="working").kind == "working"
    fact = memory.add("Ada drinks tea", kind="semantic", key="ada.drink")
    assert (fact.kind, fact.key) == ("semantic", "ada.drink")
    assert store.counts() == {
        ("agent", "episodic"): 1,
        ("agent", "semantic"): 1,
        ("agent", "working"): 1,
    }
    with pytest.raises(MemoryConfigError, match=r"no memory of that kind.*working, episodic"):
        memory.add("x", kind="reflection")


def test_merge_deduplicates_by_content(store: MemoryStore, clock: FakeClock) -> None:
    memory = store.composite("agent", clock=clock)
    memory.add("The deploy failed", kind="working", importance=0.2)
    memory.add("the  deploy failed", kind="episodic", importance=0.9)
    memory.add("The deploy FAILED", kind="semantic", key="deploy")
    memory.add("the build passed", kind="episodic")
    results = memory.retrieve("deploy failed", k=10)
    assert len(results) == 2
    top = results[0]
    # The best-scored copy survives: the important episodic one.
    assert (top.entry.kind, top.entry.importance) == ("episodic", 0.9)
    assert results[1].entry.content == "the build passed"


def test_dedup_still_fills_k_from_further_down(store: MemoryStore) -> None:
    memory = store.composite("agent", kinds=["episodic"])
    for _ in range(6):
        memory.add("duplicate line")
    memory.add("other line one")
    memory.add("other line two")
    assert len(memory.retrieve("duplicate line", k=3)) == 3


def test_score_is_the_documented_weighted_sum(store: MemoryStore, clock: FakeClock) -> None:
    memory = store.composite(
        "agent",
        clock=clock,
        relevance_weight=0.5,
        importance_weight=0.3,
        recency_weight=0.2,
        half_life=100.0,
    )
    entry = memory.add("the cat sat on the mat", importance=0.4)
    clock.advance(100.0)  # exactly one half-life
    (result,) = memory.retrieve("cat on a mat", k=1)
    vectors = HashingEmbedder().embed(["cat on a mat", "the cat sat on the mat"])
    relevance = float(vectors[0] @ vectors[1])
    assert result.entry.id == entry.id
    assert result.details["relevance"] == pytest.approx(relevance, abs=1e-6)
    assert result.details["importance"] == 0.4
    assert result.details["recency"] == pytest.approx(0.5)
    assert result.score == pytest.approx(0.5 * relevance + 0.3 * 0.4 + 0.2 * 0.5, abs=1e-6)


def test_recency_and_importance_break_equal_relevance(store: MemoryStore, clock: FakeClock) -> None:
    memory = store.composite("agent", kinds=["episodic"], clock=clock, half_life=10.0)
    memory.add("status report")
    clock.advance(50)
    fresh = memory.add("status report!")
    assert memory.retrieve("status report", k=1)[0].entry.id == fresh.id
    clock.advance(50)
    vital = memory.add("status report?", importance=1.0)
    clock.advance(1000)  # everything is old now: importance decides
    assert memory.retrieve("status report", k=1)[0].entry.id == vital.id


def test_working_entries_are_ranked_by_relevance_here(store: MemoryStore) -> None:
    memory = store.composite("agent", kinds=["working", "episodic"])
    memory.add("invoice number 4411 is overdue", kind="working")
    memory.add("the weather is sunny", kind="working")
    (best,) = memory.retrieve("overdue invoice", k=1)
    assert best.entry.kind == "working" and "invoice" in best.entry.content


@dataclass
class Reply:
    text: str


class FakeLLM:
    async def complete(self, messages: list[dict[str, str]], **kw: Any) -> Reply:
        return Reply("deploys are risky")


def test_with_reflection_the_base_is_the_episodic_memory(store: MemoryStore) -> None:
    memory = store.composite("agent", kinds=["episodic", "reflection"], every=2, llm=FakeLLM())
    memory.add("deploy one failed")
    memory.add("deploy two failed")
    reflection = memory["reflection"]
    assert reflection.needs_reflection
    asyncio.run(reflection.reflect())
    results = memory.retrieve("deploy", k=10)
    assert sorted(r.entry.kind for r in results) == ["episodic", "episodic", "reflection"]
    assert len({r.entry.id for r in results}) == 3


def test_buffered_composite_reads_its_own_writes(store: MemoryStore) -> None:
    ops: list[MemoryOp] = []
    memory = store.composite("agent", buffer=ops)
    memory.add("buffered thought", kind="working")
    memory.add("buffered event")
    assert {r.entry.content for r in memory.retrieve("buffered", k=5)} == {
        "buffered thought",
        "buffered event",
    }
    assert store.counts() == {}
    memory.clear()
    assert memory.retrieve("buffered") == [] and memory.inspect() == []


def test_results_are_sorted_and_at_most_k(store: MemoryStore) -> None:
    memory = store.composite("agent")
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    for n in range(40):
        kind: MemoryKind = ("working", "episodic", "semantic")[n % 3]
        extra: dict[str, Any] = {"key": f"k{n}"} if kind == "semantic" else {}
        text = " ".join(rng.choice(words, size=3))
        memory.add(f"{text} {n}", kind=kind, importance=float(rng.random()), **extra)
    for k in [0, 1, 5, 50]:
        results = memory.retrieve("alpha gamma", k=k)
        assert len(results) <= k
        scores = [r.score for r in results]
        assert scores == sorted(scores, reverse=True)


def test_configuration_is_validated(store: MemoryStore) -> None:
    episodic = store.memory("episodic", "a")
    with pytest.raises(MemoryConfigError, match="two 'episodic' memories"):
        CompositeMemory([episodic, store.memory("episodic", "b")])
    with pytest.raises(MemoryConfigError, match="must be >= 0"):
        CompositeMemory([episodic], relevance_weight=-1)
    with pytest.raises(MemoryConfigError, match="half_life"):
        CompositeMemory([episodic], half_life=0)
    with pytest.raises(MemoryConfigError, match="holds no 'semantic' memory"):
        CompositeMemory([episodic])["semantic"]
