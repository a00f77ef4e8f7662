"""Item 8 of issue 20: large effect results stored once by content hash on PostgreSQL,
as on SQLite (``m003_blobs``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from flowstate import END, START, CorruptRowError, GraphBuilder, NodeContext
from flowstate.checkpoints import PostgresStore
from tests.store.conftest import pg_schema, require_postgres

BIG = "lorem ipsum " * 5000  # ~60 kB, like a long LLM answer


class S(BaseModel):
    topic: str = ""
    size: int = 0


async def fetch(s: S, ctx: NodeContext) -> dict[str, Any]:
    async def get(topic: str) -> str:
        return BIG

    text = await ctx.effect("llm", get, s.topic)
    small = await ctx.effect("tool", _small)
    return {"size": len(text) + len(small)}


async def _small() -> str:
    return "ok"


def _graph(store: PostgresStore) -> Any:
    g = GraphBuilder(S).add_node(fetch)
    g.add_edge(START, "fetch").add_edge("fetch", END)
    return g.compile(store=store)


def _count(c: psycopg.Connection[Any], schema: str, table: str) -> int:
    return int(c.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0])  # type: ignore[index]


def test_large_effect_results_are_stored_once_on_postgres(tmp_path: Path) -> None:
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "blobs")
    store = PostgresStore(dsn, schema=schema)
    app = _graph(store)
    app.run_sync({"topic": "t"}, run_id="parent")
    for i in range(5):  # forks that re-use the parent's journaled answer
        asyncio.run(app.fork("parent", at=0, reuse_effects=True, new_run_id=f"f{i}"))
    with psycopg.connect(dsn, autocommit=True) as c:
        assert _count(c, schema, "effects") == 12
        assert _count(c, schema, "blobs") == 1
        (stored,) = c.execute(f'SELECT sum(length("data")) FROM "{schema}".blobs').fetchone()  # type: ignore[misc]
        (refs,) = c.execute(  # type: ignore[misc]
            f'SELECT sum(length("response")) FROM "{schema}".effects WHERE "name" = %s', ["llm"]
        ).fetchone()
    assert stored == len(BIG) + 2 and refs < 6 * 100
    got = store.effects("f3")
    assert [e.response for e in got] == [f'"{BIG}"', '"ok"']  # small ones stay inline
    assert app.get_state("f3").size == len(BIG) + 2
    assert store.integrity_check() == "ok"
    # a new store object (another process) reads the same
    other = PostgresStore(dsn, schema=schema)
    assert other.effects("parent") == store.effects("parent")
    # deleting every run that refers to the blob deletes it
    for rid in ("parent", "f0", "f1", "f2", "f3"):
        store.delete_run(rid)
    with psycopg.connect(dsn, autocommit=True) as c:
        assert _count(c, schema, "blobs") == 1
        store.delete_run("f4")
        assert _count(c, schema, "blobs") == 0
    other.close()
    store.close()


def test_a_tampered_or_missing_blob_is_a_typed_error_on_postgres(tmp_path: Path) -> None:
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "tamper")
    store = PostgresStore(dsn, schema=schema)
    app = _graph(store)
    app.run_sync({"topic": "t"}, run_id="r")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""UPDATE "{schema}".blobs SET "data" = replace("data", 'lorem', 'LOREM')""")
    with pytest.raises(CorruptRowError, match=r"blob .* fails its hash"):
        store.effects("r")
    assert "fails its hash" in store.integrity_check()
    with pytest.raises(CorruptRowError):
        asyncio.run(app.replay("r"))
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'DELETE FROM "{schema}".blobs')
    with pytest.raises(CorruptRowError, match=r"blob .* is missing"):
        store.effects("r")
    assert "is missing" in store.integrity_check()
    store.close()
