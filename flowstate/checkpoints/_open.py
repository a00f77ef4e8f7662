"""Open a checkpoint store from what a user types: a path or a database URL."""

from __future__ import annotations

import os
from typing import Any

from ._sqlite import Durability, SQLiteStore

__all__ = ["open_store"]


def open_store(target: str | os.PathLike[str], *, durability: Durability = "normal") -> Any:
    """``postgresql://`` / ``postgres://`` URLs open a Postgres store (the ``postgres``
    extra), ``memory://`` an ``InMemoryStore``; anything else is an SQLite file path."""
    if isinstance(target, str) and target == "memory://":
        from ._memory_store import InMemoryStore

        return InMemoryStore()
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresStore

        return PostgresStore(target)
    return SQLiteStore(target, durability=durability)
