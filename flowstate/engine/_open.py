"""Which store a graph is compiled with: ``compile(store=...)`` takes a path, a URL or a
store object."""

from __future__ import annotations

import os

from flowstate.checkpoints import (
    CheckpointStore,
    Durability,
    InMemoryStore,
    SQLiteStore,
    keyring_from_env,
)

__all__ = ["DEFAULT_DB", "StoreArg", "open_store"]

DEFAULT_DB = "flowstate.db"
"""The SQLite file used when neither ``store=`` nor ``$FLOWSTATE_DB`` names one."""

StoreArg = str | os.PathLike[str] | CheckpointStore | None
"""What ``compile(store=...)`` accepts."""


def open_store(store: StoreArg, durability: Durability = "normal") -> CheckpointStore:
    """A path or ``:memory:`` opens an SQLite store, a ``postgresql://`` URL a Postgres
    store, ``memory://`` an ``InMemoryStore`` (no persistence), None ``$FLOWSTATE_DB`` or
    ``flowstate.db``; a ``CheckpointStore`` is used as it is. A path or URL is opened with
    the keyring of ``$FLOWSTATE_KEYS`` (encryption at rest), if set."""
    if store is None:
        store = os.environ.get("FLOWSTATE_DB", DEFAULT_DB)
    if isinstance(store, str) and store == "memory://":
        return InMemoryStore()
    if isinstance(store, str) and store.startswith(("postgresql://", "postgres://")):
        from flowstate.checkpoints import PostgresStore

        return PostgresStore(store, encryption=keyring_from_env())
    if isinstance(store, str | os.PathLike):
        return SQLiteStore(store, durability=durability, encryption=keyring_from_env())
    return store
