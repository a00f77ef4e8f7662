"""The Postgres schemas these tests create are dropped after each test."""

from tests.store.conftest import _drop_postgres_schemas  # noqa: F401  (an autouse fixture)
