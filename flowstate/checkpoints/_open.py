"""Open a store from the string a user gives (a path, ``:memory:``, ``memory://`` or a
``postgresql://`` URL), and describe a store in one line for messages."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._crypto import Keyring, keyring_from_env
from ._memory_store import InMemoryStore
from ._sqlite import Durability, SQLiteStore

POSTGRES_PREFIXES = ("postgresql://", "postgres://")
"""URL schemes that name a PostgreSQL database."""


def is_postgres_url(spec: str) -> bool:
    """Whether ``spec`` names a PostgreSQL database rather than an SQLite file."""
    return spec.startswith(POSTGRES_PREFIXES)


def open_store(
    spec: str | os.PathLike[str],
    *,
    durability: Durability = "normal",
    migrate: bool = True,
    encryption: Keyring | None = None,
) -> Any:
    """The store ``spec`` names: ``memory://`` (no persistence), a ``postgresql://`` URL
    (needs the ``postgres`` extra; ``?schema=NAME`` picks the schema), or an SQLite path
    (``:memory:`` included), created if missing. ``migrate=False`` opens the database as
    it is, for diagnosis. ``encryption``: the keyring sealing payload columns; None reads
    ``FLOWSTATE_KEYS`` (so the CLI, the service and the inspector use it). ``memory://``
    keeps nothing at rest and ignores it."""
    if encryption is None:
        encryption = keyring_from_env()
    if not isinstance(spec, str):  # a path object
        return SQLiteStore(spec, durability=durability, migrate=migrate, encryption=encryption)
    if spec == "memory://":
        return InMemoryStore()
    if is_postgres_url(spec):
        from ._postgres import PostgresStore

        dsn, schema = _split_schema(spec)
        if schema:
            return PostgresStore(dsn, schema=schema, migrate=migrate, encryption=encryption)
        return PostgresStore(dsn, migrate=migrate, encryption=encryption)
    return SQLiteStore(spec, durability=durability, migrate=migrate, encryption=encryption)


def _split_schema(url: str) -> tuple[str, str | None]:
    """``postgresql://…/db?schema=NAME`` names the schema holding the tables; libpq knows
    no such parameter, so it is taken out of the URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def describe_store(store: Any) -> str:
    """One line naming where ``store`` keeps its rows (a password in a URL is masked)."""
    if isinstance(store, SQLiteStore):
        return ":memory:" if store.memory else str(store.path)
    if isinstance(store, InMemoryStore):
        return "memory://"
    dsn = getattr(store, "dsn", None)
    if isinstance(dsn, str):
        masked = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
        schema = getattr(store, "schema", None)
        return f"{masked} (schema {schema})" if schema else masked
    return type(store).__name__
