"""The stored record (:class:`MemoryEntry`) and the retrieval result (:class:`ScoredEntry`)."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = ["MemoryEntry", "MemoryKind", "ScoredEntry", "new_entry_id"]

MemoryKind = Literal["working", "episodic", "semantic", "reflection"]
"""Which memory an entry belongs to; one value per memory class.

- ``"working"``: short-term scratch space with a fixed capacity.
- ``"episodic"``: what happened, retrieved by similarity to a query.
- ``"semantic"``: facts stored under a key, updated in place.
- ``"reflection"``: insights an LLM distilled from episodic entries.
"""

MEMORY_KINDS: tuple[MemoryKind, ...] = ("working", "episodic", "semantic", "reflection")


def new_entry_id() -> str:
    """A fresh entry id: 32 lowercase hex digits of a random UUID."""
    return uuid.uuid4().hex


class MemoryEntry(BaseModel):
    """One stored memory. Frozen: a change is a new entry written with the same ``id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_entry_id, min_length=1)
    """Primary key. Chosen by the writer, so re-applying the same write cannot duplicate it."""

    content: str
    """The remembered text; what is embedded and what retrieval returns."""

    timestamp: float = Field(default_factory=time.time, allow_inf_nan=False)
    """When the entry was written (or last updated), in Unix seconds."""

    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    """0 (trivial) to 1 (vital). Working memory evicts the least important first."""

    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    """Free-form JSON the caller attaches; reflections record their ``sources`` here."""

    kind: MemoryKind
    """Which memory holds the entry; see :data:`MemoryKind`."""

    key: str | None = None
    """The fact's key for ``"semantic"`` entries (unique per namespace); ``None`` otherwise."""

    namespace: str = Field(min_length=1)
    """Isolation scope, e.g. one agent, user or crew. Reads never cross namespaces."""


class ScoredEntry(BaseModel):
    """A retrieval result: the entry and the score it was ranked by (higher is better)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry: MemoryEntry
    """The retrieved entry."""

    score: float
    """The ranking score; its meaning depends on the memory (see each ``retrieve``)."""

    details: dict[str, float] = Field(default_factory=dict)
    """The score's components where it combines several (composite memory:
    ``relevance``, ``importance``, ``recency``), for debugging a ranking."""
