"""``open_memory_store``: a memory store from a location, SQLite path or PostgreSQL URL."""

from __future__ import annotations

import pathlib

from ._backend import BaseMemoryStore
from ._embed import Embedder
from ._errors import MemoryConfigError

__all__ = ["open_memory_store"]


def open_memory_store(
    location: str | pathlib.Path, *, schema: str = "flowstate", embedder: Embedder | None = None
) -> BaseMemoryStore:
    """A :class:`PostgresMemoryStore` for a ``postgresql://`` URL (tables in ``schema``),
    else a :class:`MemoryStore` on the SQLite file at ``location``."""
    if isinstance(location, str) and location.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresMemoryStore

        return PostgresMemoryStore(location, schema=schema, embedder=embedder)
    if isinstance(location, (str, pathlib.Path)):
        from ._store import MemoryStore

        return MemoryStore(location, embedder=embedder)
    raise MemoryConfigError(
        f"open_memory_store() takes an SQLite path or a postgresql:// URL, got "
        f"{type(location).__name__}"
    )
