"""Memory inside nodes: ``ctx.memory(namespace, kind)``.

Writes are buffered during the activation and committed in the activation's own
transaction, so a crash never leaves a half-written memory and a resumed node does not add
an entry twice. Reads are journaled effects, so resume and offline replay see exactly what
the node saw the first time (and replay needs no memory database at all).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from flowstate.checkpoints import CheckpointStore

__all__ = ["MemoryBinding", "NodeMemory"]


class MemoryBinding:
    """Per-store memory plumbing: the schema, a reader, the commit hook.

    Memories live in the checkpoint database: an SQLite store's file, or a Postgres store's
    schema (a ``PostgresMemoryStore`` with a connection of its own for reads); the
    activation's commit applies the node's ops on the checkpoint store's connection.
    """

    def __init__(self, store: CheckpointStore) -> None:
        from flowstate.checkpoints import SQLiteStore
        from flowstate.errors import RunStateError
        from flowstate.memory import MemoryStore, PostgresMemoryStore, ensure_schema

        if not isinstance(store, SQLiteStore):
            dsn, schema = getattr(store, "dsn", None), getattr(store, "schema", None)
            if isinstance(dsn, str) and isinstance(schema, str):  # a PostgresStore
                self.reader: Any = PostgresMemoryStore(dsn, schema=schema)
                return
            raise RunStateError(
                "ctx.memory needs a checkpoint store with a database (SQLite or Postgres: "
                f"memories live in it); this graph runs on {type(store).__name__}"
            )
        with store._lock:
            ensure_schema(store.db)
        # reads go through their own connection (usable from the threads sync nodes run
        # in); for an in-memory database there is only the store's own
        self.reader = MemoryStore(store.db) if store.memory else MemoryStore(store.path)


class NodeMemory:
    """A memory as a node sees it: ``add`` is buffered into the node's commit; ``retrieve``,
    ``inspect`` and ``reflect`` are journaled."""

    def __init__(self, ctx: Any, mem: Any, label: str) -> None:
        self._ctx = ctx
        self._mem = mem
        self._label = label

    def add(self, content: str, **kwargs: Any) -> Any:
        return self._mem.add(content, **kwargs)

    async def retrieve(self, query: str, k: int = 5) -> list[Any]:
        from flowstate.memory import ScoredEntry

        def read(q: str, n: int) -> list[Any]:
            return [s.model_dump(mode="json") for s in self._mem.retrieve(q, n)]

        raw = await self._ctx.effect(f"memory.retrieve:{self._label}", read, query, k)
        return TypeAdapter(list[ScoredEntry]).validate_python(raw)

    async def inspect(self) -> list[Any]:
        from flowstate.memory import MemoryEntry

        def read() -> list[Any]:
            return [e.model_dump(mode="json") for e in self._mem.inspect()]

        raw = await self._ctx.effect(f"memory.inspect:{self._label}", read)
        return TypeAdapter(list[MemoryEntry]).validate_python(raw)

    @property
    def needs_reflection(self) -> bool:
        return bool(getattr(self._mem, "needs_reflection", False))

    async def reflect(self) -> list[Any]:
        """Distil insights now (reflection memory): an awaited, journaled step of this node,
        never a background task."""
        return await self._mem.reflect()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mem, name)


def reflection_fn(ctx: Any) -> Any:
    """A ``complete_fn`` for reflection whose LLM call is a journaled effect."""

    async def complete(prompt: str, *, system: str | None = None) -> str:
        llm = ctx.services.get("llm")
        if llm is None:
            from flowstate.errors import RunStateError

            raise RunStateError(
                "reflection memory needs a model: set app.services['llm'] (or pass llm=)"
            )
        from flowstate.llm import JournaledLLM, user

        reply = await JournaledLLM(llm, ctx).complete([user(prompt)], system=system)
        return str(reply.text)

    return complete


def ops_json(ops: list[Any]) -> str:
    from flowstate.memory import dump_ops

    return json.dumps(dump_ops(ops)) if ops else "[]"
