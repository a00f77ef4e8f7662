"""Working memory: capacity, eviction order (ties included) and recency retrieval."""

from __future__ import annotations

import pytest
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstate.memory import MemoryConfigError, MemoryStore, WorkingMemory

from ._helpers import FakeClock
from .conftest import Location


def contents(memory: WorkingMemory) -> list[str]:
    return [entry.content for entry in memory.inspect()]


def test_over_capacity_evicts_the_least_important(store: MemoryStore, clock: FakeClock) -> None:
    memory = store.memory("working", "agent", capacity=3, clock=clock)
    for text, importance in [("a", 0.5), ("b", 0.2), ("c", 0.8), ("d", 0.6)]:
        clock.advance(1)
        memory.add(text, importance=importance)
    assert contents(memory) == ["a", "c", "d"]


def test_equal_importance_evicts_the_oldest(store: MemoryStore, clock: FakeClock) -> None:
    memory = store.memory("working", "agent", capacity=2, clock=clock)
    for text, importance in [("old", 0.3), ("newer", 0.3), ("vital", 0.9)]:
        clock.advance(1)
        memory.add(text, importance=importance)
    assert contents(memory) == ["newer", "vital"]


def test_equal_importance_and_timestamp_evicts_the_first_written(
    store: MemoryStore, clock: FakeClock
) -> None:
    memory = store.memory("working", "agent", capacity=2, clock=clock)  # clock never moves
    for text, importance in [("first", 0.3), ("second", 0.3), ("vital", 0.9)]:
        memory.add(text, importance=importance)
    assert sorted(contents(memory)) == ["second", "vital"]


def test_a_new_entry_that_is_least_important_is_evicted_itself(
    store: MemoryStore, clock: FakeClock
) -> None:
    memory = store.memory("working", "agent", capacity=2, clock=clock)
    for text, importance in [("a", 0.9), ("b", 0.8), ("trivial", 0.1)]:
        clock.advance(1)
        memory.add(text, importance=importance)
    assert contents(memory) == ["a", "b"]


def test_retrieve_returns_the_most_recent_k_and_ignores_the_query(
    store: MemoryStore, clock: FakeClock
) -> None:
    memory = store.memory("working", "agent", capacity=5, clock=clock)
    for text in ["one", "two", "three", "four"]:
        clock.advance(1)
        memory.add(text, importance=0.5)
    for query in ["one", "nothing like it", ""]:
        results = memory.retrieve(query, k=2)
        assert [r.entry.content for r in results] == ["four", "three"]
        assert [r.score for r in results] == [1.0, 0.5]
    assert memory.retrieve("x", k=0) == []
    assert len(memory.retrieve("x", k=10)) == 4


def test_capacity_holds_across_two_writers(store: MemoryStore, location: Location) -> None:
    other = location.open()
    first = store.memory("working", "agent", capacity=3)
    second = other.memory("working", "agent", capacity=3)
    for n in range(5):
        first.add(f"first {n}")
        second.add(f"second {n}")
    assert first.count() == second.count() == 3
    other.close()


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
def test_capacity_must_be_a_positive_int(store: MemoryStore, capacity: object) -> None:
    with pytest.raises(MemoryConfigError, match="capacity must be an int >= 1"):
        store.memory("working", "agent", capacity=capacity)  # type: ignore[call-overload]


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=5),
    adds=st.lists(
        st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.booleans()),
        min_size=1,
        max_size=20,
    ),
)
def test_property_never_over_capacity_and_keeps_the_most_important(
    capacity: int, adds: list[tuple[float, bool]]
) -> None:
    clock = FakeClock()
    store = MemoryStore(sqlite_utils.Database(memory=True))
    memory = store.memory("working", "p", capacity=capacity, clock=clock)
    model: list[tuple[float, float, int, str]] = []  # importance, timestamp, order, id
    for order, (importance, tick) in enumerate(adds):
        if tick:
            clock.advance(1)
        entry = memory.add(f"entry {order}", importance=importance)
        model.append((importance, entry.timestamp, order, entry.id))
        model = sorted(model, reverse=True)[:capacity]
        kept = memory.inspect()
        assert len(kept) <= capacity
        assert {e.id for e in kept} == {item[3] for item in model}
    store.close()
