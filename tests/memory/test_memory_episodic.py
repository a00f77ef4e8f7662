"""Episodic memory: cosine ranking, recency tie-break, kept importance and timestamps."""

from __future__ import annotations

import numpy as np
import pytest
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstate.memory import HashingEmbedder, MemoryConfigError, MemoryStore

from ._helpers import FakeClock


class TableEmbedder:
    """Fixed vectors per text, so similarities are exact and known."""

    name = "table"
    dim = 3

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.array([self.table[t] for t in texts], dtype=np.float32)


VECTORS = {
    "north": [1.0, 0.0, 0.0],
    "north-east": [1.0, 1.0, 0.0],
    "east": [0.0, 1.0, 0.0],
    "south": [-1.0, 0.0, 0.0],
    "up": [0.0, 0.0, 1.0],
    "query": [1.0, 0.0, 0.0],
}


def test_ranks_by_cosine_similarity(store: MemoryStore) -> None:
    memory = store.memory("episodic", "a", embedder=TableEmbedder(VECTORS))
    for text in ["east", "south", "north-east", "north", "up"]:
        memory.add(text)
    results = memory.retrieve("query", k=5)
    # "east" and "up" are both orthogonal to the query: the newer one ("up") comes first.
    assert [r.entry.content for r in results] == ["north", "north-east", "up", "east", "south"]
    assert results[0].score == pytest.approx(1.0)
    assert results[1].score == pytest.approx(1 / np.sqrt(2))
    assert results[-1].score == pytest.approx(-1.0)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_equal_similarity_goes_to_the_newer_entry(store: MemoryStore, clock: FakeClock) -> None:
    memory = store.memory("episodic", "a", clock=clock)
    old = memory.add("the meeting moved to friday")
    clock.advance(10)
    new = memory.add("the meeting moved to friday")
    other = memory.add("completely unrelated words")
    results = memory.retrieve("meeting friday", k=3)
    assert [r.entry.id for r in results][:2] == [new.id, old.id]
    assert results[0].score == results[1].score
    assert results[2].entry.id == other.id


def test_equal_similarity_and_timestamp_goes_to_the_later_write(
    store: MemoryStore, clock: FakeClock
) -> None:
    memory = store.memory("episodic", "a", clock=clock)  # frozen clock: equal timestamps
    ids = [memory.add("same words").id for _ in range(3)]
    assert [r.entry.id for r in memory.retrieve("same words", k=3)] == ids[::-1]


def test_keeps_importance_timestamp_and_metadata(store: MemoryStore, clock: FakeClock) -> None:
    memory = store.memory("episodic", "a", clock=clock)
    added = memory.add("deploy failed", importance=0.9, metadata={"run": 7, "tags": ["ci"]})
    (result,) = memory.retrieve("deploy", k=1)
    assert result.entry == added
    assert result.entry.importance == 0.9
    assert result.entry.timestamp == clock.now
    assert result.entry.metadata == {"run": 7, "tags": ["ci"]}


def test_explicit_id_makes_a_retried_add_idempotent(store: MemoryStore) -> None:
    memory = store.memory("episodic", "a")
    memory.add("hello", id="fixed-id")
    memory.add("hello", id="fixed-id")
    assert memory.count() == 1


def test_empty_memory_returns_nothing_and_k_is_validated(store: MemoryStore) -> None:
    memory = store.memory("episodic", "a")
    assert memory.retrieve("anything") == []
    memory.add("something")
    assert memory.retrieve("anything", k=0) == []
    with pytest.raises(MemoryConfigError, match="k must be an int >= 0"):
        memory.retrieve("anything", k=-1)


def test_bad_arguments_name_the_culprit(store: MemoryStore) -> None:
    memory = store.memory("episodic", "a")
    with pytest.raises(MemoryConfigError, match=r"importance.*got 1\.5"):
        memory.add("x", importance=1.5)
    with pytest.raises(MemoryConfigError, match=r"unexpected keyword.*colour.*accepts"):
        memory.add("x", colour="red")
    with pytest.raises(MemoryConfigError, match="takes text content"):
        memory.add(42)  # type: ignore[arg-type]
    with pytest.raises(MemoryConfigError, match="namespace must be a non-empty string"):
        store.memory("episodic", "")


def test_rows_from_another_embedder_are_refused_loudly(store: MemoryStore) -> None:
    store.memory("episodic", "a", embedder=HashingEmbedder(dim=64)).add("written with 64")
    reader = store.memory("episodic", "a", embedder=HashingEmbedder(dim=128))
    with pytest.raises(MemoryConfigError, match=r"FSM102.*dim 64.*dim 128.*same embedder"):
        reader.retrieve("anything")


def test_a_bad_embedder_is_named(store: MemoryStore) -> None:
    class Broken:
        dim = 4

        def embed(self, texts: list[str]) -> np.ndarray:
            return np.zeros((len(texts), 3), dtype=np.float32)

    with pytest.raises(MemoryConfigError, match=r"shape \(1, 3\).*expected \(1, 4\)"):
        store.memory("episodic", "a", embedder=Broken()).add("x")


WORDS = ["apple", "banana", "cherry", "delta", "echo", "fox", "golf"]


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join),
        min_size=0,
        max_size=15,
    ),
    query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join),
    k=st.integers(min_value=0, max_value=20),
)
def test_property_at_most_k_sorted_by_score(texts: list[str], query: str, k: int) -> None:
    store = MemoryStore(sqlite_utils.Database(memory=True))
    memory = store.memory("episodic", "p")
    for text in texts:
        memory.add(text)
    results = memory.retrieve(query, k=k)
    assert len(results) == min(k, len(texts))
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    # No entry left out scores higher than the last one returned.
    if results and len(texts) > k:
        vectors = HashingEmbedder().embed([query, *texts])
        best_left_out = sorted((vectors[1:] @ vectors[0]).tolist(), reverse=True)[k]
        assert best_left_out <= scores[-1] + 1e-6
    store.close()
