"""Agent memory persisted in SQLite or PostgreSQL: working, episodic, semantic, reflection
and composite.

Quick start::

    from flowstate.memory import MemoryStore

    store = MemoryStore("agent.db")
    notes = store.memory("episodic", namespace="user-42")
    notes.add("Ada said she prefers tea over coffee", importance=0.7)
    notes.retrieve("what does Ada drink?", k=3)

Durability seam with the engine: give a memory a ``buffer`` list and its writes become
:data:`MemoryOp` values in that list instead of commits. The engine stores them with the
node's checkpoint and calls :func:`apply_ops` inside the checkpoint's transaction, so the
node's state and its memories commit together, and replay re-applies the recorded ops::

    ops: list[MemoryOp] = []
    mem = store.memory("episodic", "user-42", buffer=ops)
    mem.add("...")                         # buffered; mem.retrieve() already sees it
    conn.execute("BEGIN IMMEDIATE")
    ...                                    # the checkpoint rows
    apply_ops(conn, ops)                   # never BEGINs or COMMITs itself
    conn.execute("COMMIT")

:class:`PostgresMemoryStore` offers the same (the :class:`MemoryBackend` protocol) on a
PostgreSQL schema; :func:`open_memory_store` opens either from a path or a URL.

The default :class:`HashingEmbedder` is lexical (shared words and word pieces), not
semantic; :class:`SentenceEmbedder` (``pip install 'flowstate[embeddings]'``) is semantic.
"""

from ._backend import MemoryBackend
from ._base import Memory
from ._composite import CompositeMemory
from ._embed import Embedder, HashingEmbedder, SentenceEmbedder
from ._errors import (
    EmbeddingsUnavailable,
    FlowstateMemoryError,
    MemoryConfigError,
    MemoryStoreError,
    ReflectionError,
)
from ._kinds import EpisodicMemory, SemanticMemory, WorkingMemory
from ._models import MemoryEntry, MemoryKind, ScoredEntry
from ._open import open_memory_store
from ._ops import ClearOp, DeleteOp, MemoryOp, TrimOp, UpsertOp, dump_ops, load_ops
from ._postgres import PostgresMemoryStore
from ._reflection import CompleteFn, ReflectionLLM, ReflectionMemory, parse_insights
from ._schema import ensure_schema
from ._sql import apply_ops
from ._store import MemoryStore

__all__ = [
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
]


def _show_public_paths() -> None:
    """Tracebacks and docs show the public path rather than the private module."""
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) and obj.__module__.startswith(__name__ + "._"):
            obj.__module__ = __name__


_show_public_paths()
del _show_public_paths
