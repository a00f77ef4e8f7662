"""Memory inside graphs (issue 7 items 2 and 4): writes commit with the node, reads are
journaled, memories persist across runs and processes; on SQLite and on Postgres (issue 21),
where the memories live in the checkpoint store's schema and commit in its transaction."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeContext, append
from flowstate.checkpoints._postgres import PostgresStore
from flowstate.testing import assert_replays
from tests.conftest import CrashingStore, SimulatedCrash
from tests.store.conftest import drop_pg_schema, pg_schema, require_postgres


class CrashingPostgresStore(PostgresStore):
    """A real Postgres store that "dies" right after its k-th activation commit."""

    def __init__(self, dsn: str, schema: str, crash_after: int | None = None) -> None:
        super().__init__(dsn, schema=schema)
        self.crash_after = crash_after
        self.activation_commits = 0

    def commit(self, run_id, *, writes=(), effects=(), step=None, run_fields=None, hook=None):  # type: ignore[no-untyped-def]
        super().commit(
            run_id, writes=writes, effects=effects, step=step, run_fields=run_fields, hook=hook
        )
        if writes:
            self.activation_commits += 1
            if self.crash_after is not None and self.activation_commits >= self.crash_after:
                raise SimulatedCrash(f"crash after {self.activation_commits} commits")


@dataclass
class Db:
    """One test database: ``store()`` opens the checkpoint store (a path for SQLite),
    ``crashing(k)`` a store that dies after its k-th activation commit, ``opener`` the
    Python expression that opens it in another process."""

    store: Callable[[], Any]
    crashing: Callable[[int | None], Any]
    opener: str


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        path = tmp_path / "x.db"
        yield Db(lambda: str(path), lambda k: CrashingStore(path, crash_after=k), repr(str(path)))
        return
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "ctx")
    try:
        yield Db(
            lambda: PostgresStore(dsn, schema=schema),
            lambda k: CrashingPostgresStore(dsn, schema, crash_after=k),
            f"PostgresStore({dsn!r}, schema={schema!r})",
        )
    finally:
        drop_pg_schema(schema)


def close(store: Any) -> None:
    """Drop a crashed store's connection, as a dead process would."""
    if isinstance(store, CrashingStore):
        store.conn.close()
    else:
        store.close()


class Chat(BaseModel):
    user: str
    said: str
    recalled: Annotated[list[str], append] = []


def build(crash_in_recall: dict | None = None) -> GraphBuilder[Chat]:
    async def remember(s: Chat, ctx: NodeContext) -> dict:
        mem = ctx.memory(f"user:{s.user}", "episodic")
        mem.add(s.said, importance=0.8)
        return {}

    async def recall(s: Chat, ctx: NodeContext) -> dict:
        mem = ctx.memory(f"user:{s.user}", "episodic")
        hits = await mem.retrieve(s.said, k=3)
        if crash_in_recall and crash_in_recall.get("armed"):
            crash_in_recall["armed"] = False
            raise SimulatedCrash("died after reading memory")
        return {"recalled": [h.entry.content for h in hits]}

    g = GraphBuilder(Chat, name="chat")
    g.add_node(remember).add_node(recall)
    return g.add_edge(START, "remember").add_edge("remember", "recall").add_edge("recall", END)


def test_memories_are_shared_across_runs_of_a_namespace(db: Db) -> None:
    app = build().compile(store=db.store())
    app.run_sync({"user": "ada", "said": "I prefer tea over coffee"})
    app.run_sync({"user": "bob", "said": "I like coffee"})
    r = app.run_sync({"user": "ada", "said": "what tea do I like"})
    # this run's own message ranks first, then ada's earlier one; bob's namespace is apart
    assert r.state.recalled[:2] == ["what tea do I like", "I prefer tea over coffee"]
    assert "I like coffee" not in r.state.recalled
    entries = app.memory_store().memory("episodic", "user:ada").inspect()
    assert len(entries) == 2


def test_a_crashed_node_never_leaves_half_written_memory(db: Db) -> None:
    store = db.crashing(1)  # dies right after the first commit (remember)
    app = build().compile(store=store)
    try:
        app.run_sync({"user": "ada", "said": "tea"}, run_id="r")
    except SimulatedCrash:
        pass
    close(store)
    app2 = build().compile(store=db.store())
    assert len(app2.memory_store().memory("episodic", "user:ada").inspect()) == 1
    r = app2.resume_sync("r")
    assert r.status == "completed"
    # the committed node did not run again, so the memory holds exactly one entry
    assert len(app2.memory_store().memory("episodic", "user:ada").inspect()) == 1


def test_writes_roll_back_with_an_uncommitted_activation(db: Db) -> None:
    store = db.crashing(None)

    async def remember_then_die(s: Chat, ctx: NodeContext) -> dict:
        ctx.memory("user:x", "episodic").add("should not persist")
        raise SimulatedCrash("died before commit")

    g = GraphBuilder(Chat).add_node("remember", remember_then_die)
    g.add_edge(START, "remember").add_edge("remember", END)
    try:
        g.compile(store=store).run_sync({"user": "x", "said": "s"})
    except SimulatedCrash:
        pass
    close(store)
    app = build().compile(store=db.store())
    assert app.memory_store().memory("episodic", "user:x").inspect() == []


def test_reads_are_journaled_so_replay_needs_no_memory(db: Db) -> None:
    app = build().compile(store=db.store())
    app.run_sync({"user": "ada", "said": "tea please"}, run_id="r")
    assert any(e.name.startswith("memory.retrieve") for e in app.store.effects("r"))
    assert_replays(app, "r")


def test_memories_survive_a_process_restart(db: Db) -> None:
    root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {root!r})\n"
        "from flowstate.checkpoints._postgres import PostgresStore\n"
        "from tests.memory_engine.test_ctx_memory import build\n"
        f"build().compile(store={db.opener})"
        ".run_sync({'user': 'ada', 'said': 'I love green tea'})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    app = build().compile(store=db.store())
    r = app.run_sync({"user": "ada", "said": "green tea"})
    assert "I love green tea" in r.state.recalled


def test_reflection_is_an_awaited_journaled_step(db: Db) -> None:
    from flowstate.llm import ScriptedLLM

    class Notes(BaseModel):
        facts: list[str]
        insights: list[str] = []

    async def learn(s: Notes, ctx: NodeContext) -> dict:
        mem = ctx.memory("crew", "reflection", every=3)
        for f in s.facts:
            mem.add(f)
        out = []
        if mem.needs_reflection:
            out = [e.content for e in await mem.reflect()]
        return {"insights": out}

    g = GraphBuilder(Notes).add_node(learn).add_edge(START, "learn").add_edge("learn", END)
    app = g.compile(store=db.store())
    app.services["llm"] = ScriptedLLM(["- the user likes tea\n- the user works late"])
    r = app.run_sync({"facts": ["tea at 9", "tea at 11", "coding at midnight"]}, run_id="r")
    assert r.state.insights == ["the user likes tea", "the user works late"]
    assert [e.name for e in app.store.effects("r")] == ["llm.complete"]
    app.services["llm"] = ScriptedLLM([])  # replay must not call the model
    assert asyncio.run(app.replay("r")).identical
