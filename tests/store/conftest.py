"""Fixtures for the checkpoint-store tests.

- ``store_factory`` / ``store``: a fresh store of each backend in ``STORE_BACKENDS``: an
  SQLite file in ``tmp_path``, a ``PostgresStore`` on its own schema of the server on
  127.0.0.1:5432 (``FLOWSTATE_TEST_PG_DSN`` overrides the DSN), and an ``InMemoryStore``
  (stores opened with the same name in one test share its tables, like two processes on one
  file). Every contract test runs against all of them unchanged (STYLE.md item 12). The
  Postgres tests skip when no server can be reached, and fail instead when ``CI=true``.
  Each schema is dropped after its test.
- ``audit``: records code-execution audit events (``sys.addaudithook``) while a block of
  store reads runs, so the corruption tests can assert that nothing in a row is ever
  unpickled, imported, compiled, executed or spawned (RELIABILITY.md G7, R6).
- ``rec``: small builders for the row records, with valid defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowstate.checkpoints import (
    AttemptRecord,
    EffectRecord,
    InMemoryStore,
    InterruptRecord,
    RunRecord,
    SQLiteStore,
    StepRecord,
    WriteRecord,
)

# -- backends ------------------------------------------------------------------------------

STORE_BACKENDS = ["sqlite", "postgres", "memory"]
"""Every backend the contract suite runs against."""


def _open_sqlite(tmp_path: Path, name: str, **kwargs: Any) -> SQLiteStore:
    return SQLiteStore(tmp_path / f"{name}.db", **kwargs)


PG_DSN = os.environ.get("FLOWSTATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_PG_SESSION = uuid.uuid4().hex[:8]
_PG_REACHABLE: list[str | None] = []  # [None] when reachable, [reason] when not
_PG_SCHEMAS: set[str] = set()
"""Schemas created by the current test; ``_drop_postgres_schemas`` drops them after it."""


def require_postgres() -> str:
    """The test DSN; skips the test (fails it when ``CI=true``) without a reachable server."""
    if not _PG_REACHABLE:
        try:
            import psycopg

            psycopg.connect(PG_DSN, connect_timeout=3).close()
            _PG_REACHABLE.append(None)
        except Exception as e:  # ImportError, OperationalError
            _PG_REACHABLE.append(f"{type(e).__name__}: {e}".strip())
    reason = _PG_REACHABLE[0]
    if reason is not None:
        msg = f"no PostgreSQL server on 127.0.0.1:5432: {reason}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return PG_DSN


def pg_schema(tmp_path: Path, name: str) -> str:
    """A schema name unique to this test session, test and ``name`` (the same name in the
    same test gives the same schema, so a store can be reopened); dropped after the test."""
    digest = hashlib.sha256(f"{tmp_path}\0{name}".encode()).hexdigest()[:16]
    schema = f"fs_{_PG_SESSION}_{digest}"
    _PG_SCHEMAS.add(schema)
    return schema


def drop_pg_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as c:
        c.execute("SET lock_timeout = '10s'")
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _open_postgres(tmp_path: Path, name: str, **kwargs: Any) -> Any:
    if "durability" in kwargs:
        pytest.skip(
            "durability levels (WAL + synchronous) are an SQLite setting; a "
            "PostgresStore's durability is the server's (fsync, synchronous_commit)"
        )
    dsn = require_postgres()
    from flowstate.checkpoints._postgres import PostgresStore

    return PostgresStore(dsn, schema=pg_schema(tmp_path, name), **kwargs)


_MEMORY_DBS: dict[tuple[Path, str], InMemoryStore] = {}
"""The first in-memory store opened under each (test, name); later opens are its siblings."""


def _open_memory(tmp_path: Path, name: str, **kwargs: Any) -> InMemoryStore:
    if "durability" in kwargs:
        pytest.skip(
            "durability levels (WAL + synchronous) are an SQLite setting; an "
            "InMemoryStore persists nothing"
        )
    first = _MEMORY_DBS.get((tmp_path, name))
    if first is None:
        first = _MEMORY_DBS[(tmp_path, name)] = InMemoryStore(**kwargs)
        return first
    return first.sibling()


@pytest.fixture(autouse=True)
def _forget_memory_stores() -> Iterator[None]:
    yield
    _MEMORY_DBS.clear()


@pytest.fixture(autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    """Drop the Postgres schemas a test created (runs after its stores are closed)."""
    yield
    while _PG_SCHEMAS:
        drop_pg_schema(_PG_SCHEMAS.pop())


_FACTORIES: dict[str, Callable[..., Any]] = {
    "sqlite": _open_sqlite,
    "postgres": _open_postgres,
    "memory": _open_memory,
}

StoreFactory = Callable[..., Any]


@pytest.fixture(params=STORE_BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """``store_factory(name="x", **options)`` opens a store of this test's backend."""
    opened: list[Any] = []
    backend = request.param

    def make(name: str = "store", **kwargs: Any) -> Any:
        s = _FACTORIES[backend](tmp_path, name, **kwargs)
        opened.append(s)
        return s

    yield make
    for s in opened:
        with contextlib.suppress(Exception):
            s.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Any:
    return store_factory()


# -- record builders -------------------------------------------------------------------------


class Rec:
    """Builders for valid rows; keyword arguments override any field."""

    def __init__(self) -> None:
        self.clock = 1_700_000_000.0

    def now(self) -> float:
        self.clock += 1.0
        return self.clock

    def run(self, run_id: str, **kw: Any) -> RunRecord:
        t = kw.pop("created_at", None) or self.now()
        base: dict[str, Any] = dict(
            id=run_id,
            graph="g",
            fingerprint="f" * 64,
            graph_doc='{"nodes":{}}',
            status="running",
            input='{"n":0}',
            head_step=0,
            config="{}",
            created_at=t,
            updated_at=t,
        )
        base.update(kw)
        return RunRecord(**base)

    def step(self, run_id: str, step: int, **kw: Any) -> StepRecord:
        base: dict[str, Any] = dict(
            run_id=run_id,
            step=step,
            tasks=f'[{{"node": "n{step}", "path": "n{step}"}}]',
            joins="{}",
            snapshot=None,
            created_at=self.now(),
        )
        base.update(kw)
        return StepRecord(**base)

    def write(self, run_id: str, step: int, task_path: str = "t", **kw: Any) -> WriteRecord:
        t = self.now()
        base: dict[str, Any] = dict(
            run_id=run_id,
            step=step,
            task_path=task_path,
            node=task_path,
            seq=0,
            update=f'{{"n":{step + 1}}}',
            goto="[]",
            usage="{}",
            started_at=t,
            finished_at=t,
        )
        base.update(kw)
        return WriteRecord(**base)

    def effect(
        self, run_id: str, step: int, task_path: str = "t", seq: int = 0, **kw: Any
    ) -> EffectRecord:
        base: dict[str, Any] = dict(
            run_id=run_id,
            step=step,
            task_path=task_path,
            seq=seq,
            name="fetch",
            request=f'{{"args":[{seq}],"kwargs":{{}}}}',
            response=f'{{"v":{seq}}}',
            created_at=self.now(),
        )
        base.update(kw)
        return EffectRecord(**base)

    def interrupt(
        self, run_id: str, step: int, task_path: str = "t", seq: int = 0, **kw: Any
    ) -> InterruptRecord:
        base: dict[str, Any] = dict(
            run_id=run_id,
            step=step,
            task_path=task_path,
            seq=seq,
            payload='{"question":"ok?"}',
            answer=None,
            created_at=self.now(),
        )
        base.update(kw)
        return InterruptRecord(**base)

    def attempt(
        self, run_id: str, step: int, task_path: str = "t", attempt: int = 1, **kw: Any
    ) -> AttemptRecord:
        base: dict[str, Any] = dict(
            run_id=run_id,
            step=step,
            task_path=task_path,
            attempt=attempt,
            error="ValueError: boom",
            created_at=self.now(),
        )
        base.update(kw)
        return AttemptRecord(**base)


@pytest.fixture
def rec() -> Rec:
    return Rec()


# -- audit hook ----------------------------------------------------------------------------------

# Events that mean "something in a row was turned into code or a process". ``import`` and
# ``compile``/``open`` are filtered further below: only imports of modules named by the
# corruption payloads, and only compiles of text that came from a row, count.
_CODE_EVENTS = frozenset(
    {
        "pickle.find_class",
        "marshal.loads",
        "marshal.load",
        "exec",
        "code.__new__",
        "os.system",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "ctypes.dlopen",
        "ctypes.call_function",
        "webbrowser.open",
        "shutil.rmtree",
        "os.remove",
        "os.unlink",
    }
)

# Modules the injection payloads name; importing any of them while reading is a finding.
PAYLOAD_MODULES = ("antigravity", "fs_evil_payload", "this", "pty", "code", "pdb")
# Text planted in payloads; a ``compile`` of text containing it, or an ``open`` of a path
# containing it, means a row was evaluated.
PAYLOAD_MARKER = "fs_evil_payload"


@dataclass
class AuditRecorder:
    events: list[tuple[str, str]] = field(default_factory=list)
    active: bool = False

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event in _CODE_EVENTS:
            self.events.append((event, repr(args)[:200]))
        elif event == "import":
            name = str(args[0]) if args else ""
            if name.split(".")[0] in PAYLOAD_MODULES or PAYLOAD_MARKER in name:
                self.events.append((event, name))
        elif event == "compile":
            src = args[0] if args else None
            text = src.decode("latin-1") if isinstance(src, bytes) else str(src)
            if PAYLOAD_MARKER in text or "os.system" in text or "__reduce__" in text:
                self.events.append((event, text[:200]))
        elif event == "open":
            path = str(args[0]) if args else ""
            if PAYLOAD_MARKER in path:
                self.events.append((event, path))

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[tuple[str, str]]]:
        """Record forbidden events inside the block; yields the list they land in.

        ``importlib.import_module`` raises no ``import`` audit event of its own, so a
        payload module that appears in ``sys.modules`` during the block counts as well.
        """
        self.events = []
        before = set(sys.modules)
        self.active = True
        try:
            yield self.events
        finally:
            self.active = False
            for name in set(sys.modules) - before:
                if name.split(".")[0] in PAYLOAD_MODULES:
                    self.events.append(("sys.modules", name))


_RECORDER = AuditRecorder()
# An audit hook cannot be removed, so one is installed per process and switched on and off.
sys.addaudithook(_RECORDER.hook)


@pytest.fixture
def audit() -> AuditRecorder:
    return _RECORDER
