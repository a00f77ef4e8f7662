"""Fixtures shared by the memory tests."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from flowstate.memory import MemoryStore

from ._helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "memory.db"


@pytest.fixture
def store(db_path: pathlib.Path) -> Iterator[MemoryStore]:
    with MemoryStore(db_path) as opened:
        yield opened
