"""Fixtures shared by the memory tests.

``store`` is a memory store of each backend in ``BACKENDS``: a ``MemoryStore`` on an SQLite
file in ``tmp_path`` and a ``PostgresMemoryStore`` on a schema of its own on the server of
``tests/store/conftest.py`` (skipped without one, failed when ``CI=true``; dropped after the
test). The contract tests take ``store`` (and ``location`` to open more stores on the same
database, in this process or in another); SQLite-only tests take ``sqlite_store``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from flowstate.memory import MemoryStore, open_memory_store
from tests.store.conftest import drop_pg_schema, pg_schema, require_postgres

from ._helpers import FakeClock

BACKENDS = ["sqlite", "postgres"]
"""Every backend the memory contract suite runs against."""


@dataclass
class Location:
    """Where a test's memories live: an SQLite path, or a Postgres DSN and schema."""

    backend: str
    target: str
    """The path or the ``postgresql://`` URL."""
    schema: str = "flowstate"
    opened: list[Any] = field(default_factory=list)

    def open(self, **kwargs: Any) -> Any:
        """Another store object on the same database (like another process would open)."""
        store = open_memory_store(self.target, schema=self.schema, **kwargs)
        self.opened.append(store)
        return store

    def connect(self) -> Any:
        """A raw connection as the engine holds one (transactions managed by hand)."""
        if self.backend == "sqlite":
            import sqlite3

            return sqlite3.connect(self.target, isolation_level=None)
        import psycopg

        return psycopg.connect(self.target, autocommit=True)

    @property
    def begin(self) -> str:
        return "BEGIN IMMEDIATE" if self.backend == "sqlite" else "BEGIN"

    def table(self, name: str) -> str:
        return name if self.backend == "sqlite" else f'"{self.schema}"."{name}"'


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "memory.db"


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, db_path: pathlib.Path) -> Iterator[Location]:
    if request.param == "sqlite":
        where = Location("sqlite", str(db_path))
        yield where
        for store in where.opened:
            store.close()
        return
    dsn = require_postgres()
    schema = pg_schema(db_path.parent, "memory")
    where = Location("postgres", dsn, schema)
    try:
        yield where
    finally:
        for store in where.opened:
            store.close()
        drop_pg_schema(schema)


@pytest.fixture
def store(location: Location) -> Any:
    return location.open()


@pytest.fixture
def sqlite_store(db_path: pathlib.Path) -> Iterator[MemoryStore]:
    with MemoryStore(db_path) as opened:
        yield opened
