"""Memory writes as named, JSON-serialisable operations (``_sql.py`` holds the SQL).

Every write a memory makes is a :data:`MemoryOp`. That is the seam with the engine: a node's
memory runs in buffered mode, its ops collect in a list, and the engine stores that list with
the node's checkpoint and applies them (``apply_ops``) inside the same transaction, so the node's
state and its memories commit (or roll back) together, and replay re-applies the recorded ops.

Ops are idempotent: an op carries every value it writes (ids, timestamps, ``seq``), never asks
the clock or a random generator at apply time, and writes as an upsert by primary key.
Re-applying the same ops after a crash therefore yields the same rows, never a duplicate.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from ._models import MemoryEntry, MemoryKind

__all__ = [
    "ClearOp",
    "DeleteOp",
    "MemoryOp",
    "TrimOp",
    "UpsertOp",
    "decode_vector",
    "dump_ops",
    "encode_vector",
    "load_ops",
    "next_seq",
]

TABLE = "memories"
"""The one table this package writes (besides sqlite-utils' migration bookkeeping)."""

# The eviction order of working memory, shared by the SQL below and the in-process snapshot
# (``_snapshot.py``): keep the most important; among equals keep the newest.
KEEP_ORDER_SQL = "importance DESC, timestamp DESC, seq DESC, id DESC"


def encode_vector(vector: np.ndarray) -> str:
    """Base64 of the vector as little-endian float32: compact, exact and JSON-safe."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    """The float32 vector that :func:`encode_vector` produced."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


_seq_lock = threading.Lock()
_last_seq = 0


def next_seq() -> int:
    """A strictly increasing write sequence number for this process.

    It is the wall clock in nanoseconds, bumped when needed so that it always grows.
    Clock-based rather than a table counter so that an op can be made (and recorded) before
    any transaction exists; across processes on one machine it still orders writes by time.
    It breaks recency ties between entries with equal timestamps.
    """
    global _last_seq
    with _seq_lock:
        _last_seq = max(time.time_ns(), _last_seq + 1)
        return _last_seq


class _Op(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UpsertOp(_Op):
    """Insert an entry, or replace the entry with the same ``id`` (or the same semantic key)."""

    op: Literal["upsert"] = "upsert"
    """Discriminator."""

    entry: MemoryEntry
    """The full entry to store; its ``namespace`` and ``kind`` say where."""

    seq: int
    """Write sequence number (see :func:`next_seq`); orders entries with equal timestamps."""

    embedding: str | None = None
    """The entry's embedding as base64 little-endian float32 (a list of floats is accepted
    and converted); ``None`` for an entry without one."""

    dim: int | None = None
    """Length of ``embedding``; ``None`` exactly when ``embedding`` is."""

    embedder: str | None = None
    """Name of the embedder that made ``embedding``, checked on retrieval."""

    @field_validator("embedding", mode="before")
    @classmethod
    def _from_floats(cls, value: object) -> object:
        if isinstance(value, (list, tuple, np.ndarray)):
            return encode_vector(np.asarray(value, dtype=np.float32))
        return value

    @model_validator(mode="after")
    def _dim_matches(self) -> UpsertOp:
        if self.embedding is None:
            if self.dim is not None:
                raise ValueError(f"dim is {self.dim} but embedding is None: drop dim")
            return self
        actual = len(base64.b64decode(self.embedding)) // 4
        if self.dim != actual:
            raise ValueError(
                f"entry {self.entry.id!r}: dim is {self.dim} but the embedding holds "
                f"{actual} float32 values: set dim={actual}"
            )
        return self

    def vector(self) -> np.ndarray | None:
        """The embedding as a float32 array, or ``None``."""
        return None if self.embedding is None else decode_vector(self.embedding)


class DeleteOp(_Op):
    """Delete entries by id within one namespace (missing ids are ignored)."""

    op: Literal["delete"] = "delete"
    """Discriminator."""

    namespace: str
    """Only entries of this namespace are deleted, whatever the ids."""

    ids: list[str]
    """The entry ids to delete."""


class ClearOp(_Op):
    """Delete every entry of a namespace, or of one kind within it."""

    op: Literal["clear"] = "clear"
    """Discriminator."""

    namespace: str
    """The namespace to clear."""

    kind: MemoryKind | None = None
    """Clear only this kind; ``None`` clears every kind of the namespace."""


class TrimOp(_Op):
    """Keep only the ``capacity`` most important entries of a namespace and kind.

    Among equally important entries the newest are kept (by timestamp, then ``seq``, then
    id), i.e. the least important entry is evicted first and the oldest among equals.
    Evaluated when applied, so a capacity holds even if other writers added entries meanwhile.
    """

    op: Literal["trim"] = "trim"
    """Discriminator."""

    namespace: str
    """The namespace whose entries are trimmed."""

    kind: MemoryKind
    """The kind whose entries are trimmed."""

    capacity: int = Field(ge=0)
    """How many entries to keep."""


MemoryOp = Annotated[UpsertOp | DeleteOp | ClearOp | TrimOp, Field(discriminator="op")]
"""One memory write; the ``op`` field says which."""

_OPS_ADAPTER: TypeAdapter[list[MemoryOp]] = TypeAdapter(list[MemoryOp])


def dump_ops(ops: Sequence[MemoryOp]) -> str:
    """Serialise ops to a JSON array (what a checkpoint stores)."""
    return _OPS_ADAPTER.dump_json(list(ops)).decode()


def load_ops(data: str | bytes | Iterable[object]) -> list[MemoryOp]:
    """Validate ops from JSON text or from already-parsed JSON (a list of dicts)."""
    if isinstance(data, (str, bytes)):
        return _OPS_ADAPTER.validate_json(data)
    return _OPS_ADAPTER.validate_python(list(data))
