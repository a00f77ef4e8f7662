"""Semantic memory: facts under keys, updated in place."""

from __future__ import annotations

import pytest

from flowstate.memory import MemoryConfigError, MemoryOp, MemoryStore

from ._helpers import FakeClock
from .conftest import Location


def test_re_adding_a_key_updates_in_place(store: MemoryStore, clock: FakeClock) -> None:
    facts = store.memory("semantic", "user", clock=clock)
    first = facts.add("Ada drinks tea", key="ada.drink", importance=0.4)
    facts.add("Bob drinks water", key="bob.drink")
    clock.advance(60)
    second = facts.add("Ada drinks coffee now", key="ada.drink", importance=0.7)
    assert second.id == first.id
    assert second.timestamp == first.timestamp + 60
    assert facts.count() == 2
    stored = facts.get("ada.drink")
    assert stored is not None
    assert (stored.id, stored.content, stored.importance) == (
        first.id,
        "Ada drinks coffee now",
        0.7,
    )
    # The embedding was replaced too: the new content is what the query finds.
    (best,) = facts.retrieve("coffee", k=1)
    assert best.entry.content == "Ada drinks coffee now"
    assert [e.content for e in store.inspect("user", "semantic")] == [
        "Bob drinks water",
        "Ada drinks coffee now",
    ]


def test_retrieve_ranks_facts_by_similarity(store: MemoryStore) -> None:
    facts = store.memory("semantic", "user")
    facts.add("the office wifi password is hunter2", key="wifi")
    facts.add("lunch is served at noon", key="lunch")
    assert facts.retrieve("wifi password", k=1)[0].entry.key == "wifi"
    assert facts.retrieve("when is lunch served", k=1)[0].entry.key == "lunch"


def test_get_and_forget(store: MemoryStore) -> None:
    facts = store.memory("semantic", "user")
    assert facts.get("nope") is None
    facts.add("x", key="k")
    assert facts.forget("k") is True
    assert facts.forget("k") is False
    assert facts.get("k") is None and facts.count() == 0


def test_a_key_is_required(store: MemoryStore) -> None:
    facts = store.memory("semantic", "user")
    with pytest.raises(MemoryConfigError, match="needs key="):
        facts.add("a fact without a key")
    with pytest.raises(MemoryConfigError, match=r"unexpected keyword.*id"):
        facts.add("x", key="k", id="abc")


def test_one_fact_per_key_even_when_two_buffered_writers_race(
    store: MemoryStore, location: Location
) -> None:
    # Both writers plan against an empty key, so both pick a fresh id; the unique
    # (namespace, kind, key) index makes the later commit replace the earlier.
    other = location.open()
    ops_a: list[MemoryOp] = []
    ops_b: list[MemoryOp] = []
    store.memory("semantic", "user", buffer=ops_a).add("from a", key="k")
    other.memory("semantic", "user", buffer=ops_b).add("from b", key="k")
    store.commit(ops_a)
    other.commit(ops_b)
    facts = store.memory("semantic", "user")
    assert facts.count() == 1
    stored = facts.get("k")
    assert stored is not None and stored.content == "from b"
    other.close()


def test_keys_are_per_namespace(store: MemoryStore) -> None:
    store.memory("semantic", "ada").add("tea", key="drink")
    store.memory("semantic", "bob").add("water", key="drink")
    ada = store.memory("semantic", "ada").get("drink")
    bob = store.memory("semantic", "bob").get("drink")
    assert ada is not None and bob is not None
    assert (ada.content, bob.content) == ("tea", "water")
