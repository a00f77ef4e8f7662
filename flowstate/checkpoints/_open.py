"""Open a store from the string a user gives (a path, ``:memory:``, ``memory://`` or a
``postgresql://`` URL), and describe a store in one line for messages."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowstate.errors import ConfigError

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
    (needs the ``postgres`` extra; ``?schema=NAME`` picks the schema, ``?pool_max_size=N``
    sizes the connection pool: see ``split_postgres_url``), or an SQLite path
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

        dsn, options = split_postgres_url(spec)
        return PostgresStore(dsn, migrate=migrate, encryption=encryption, **options)
    return SQLiteStore(spec, durability=durability, migrate=migrate, encryption=encryption)


_URL_OPTIONS = {"schema": str, "pool_min_size": int, "pool_max_size": int}
"""Query parameters of a ``postgresql://`` URL that are flowstate's, not libpq's."""


def split_postgres_url(url: str) -> tuple[str, dict[str, Any]]:
    """``postgresql://…/db?schema=NAME&pool_max_size=N`` → the URL libpq gets and the
    ``PostgresStore`` options: ``schema`` (the schema holding the tables, default
    ``flowstate``), ``pool_min_size`` (connections kept open, default 1) and
    ``pool_max_size`` (most connections at once, default 4). libpq knows none of them,
    so they are taken out of the URL; every other parameter is libpq's."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: dict[str, Any] = {}
    for key, value in query:
        kind = _URL_OPTIONS.get(key)
        if kind is None:
            continue
        if kind is int:
            try:
                number = int(value)
            except ValueError:
                raise ConfigError(
                    f"{key}={value!r} in the database URL is not a whole number; e.g. ?{key}=4"
                ) from None
            options[key.removeprefix("pool_")] = number
        else:
            options[key] = value
    rest = urlencode([(k, v) for k, v in query if k not in _URL_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), options


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
