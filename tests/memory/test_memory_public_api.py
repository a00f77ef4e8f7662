"""The public surface of flowstate.memory is curated, sorted and pinned."""

from __future__ import annotations

import flowstate.memory as memory

EXPECTED = {
    "ClearOp",
    "CompleteFn",
    "CompositeMemory",
    "DeleteOp",
    "Embedder",
    "EmbeddingsUnavailable",
    "EpisodicMemory",
    "FlowstateMemoryError",
    "HashingEmbedder",
    "Memory",
    "MemoryBackend",
    "MemoryConfigError",
    "MemoryEntry",
    "MemoryKind",
    "MemoryOp",
    "MemoryStore",
    "MemoryStoreError",
    "PostgresMemoryStore",
    "ReflectionError",
    "ReflectionLLM",
    "ReflectionMemory",
    "ScoredEntry",
    "SemanticMemory",
    "SentenceEmbedder",
    "TrimOp",
    "UpsertOp",
    "WorkingMemory",
    "apply_ops",
    "dump_ops",
    "ensure_schema",
    "load_ops",
    "open_memory_store",
    "parse_insights",
}


def test_all_is_sorted_public_and_pinned() -> None:
    assert memory.__all__ == sorted(memory.__all__)
    assert set(memory.__all__) == EXPECTED
    assert not any(name.startswith("_") for name in memory.__all__)


def test_classes_show_the_public_module() -> None:
    for name in memory.__all__:
        obj = getattr(memory, name)
        if isinstance(obj, type):
            assert obj.__module__ == "flowstate.memory", name


def test_every_memory_satisfies_the_protocol(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = memory.MemoryStore(tmp_path / "m.db")
    for kind in ["working", "episodic", "semantic", "reflection"]:
        assert isinstance(store.memory(kind, "n"), memory.Memory)  # type: ignore[call-overload]
    assert isinstance(store.composite("n"), memory.Memory)
    store.close()


def test_errors_share_one_base_and_carry_codes() -> None:
    for name in [
        "MemoryConfigError",
        "MemoryStoreError",
        "EmbeddingsUnavailable",
        "ReflectionError",
    ]:
        error = getattr(memory, name)
        assert issubclass(error, memory.FlowstateMemoryError)
        assert error.code.startswith("FSM")
