"""Retention: prune and doctor (issue 10 item 3)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from typer.testing import CliRunner

from flowstate.checkpoints import doctor, parse_age, prune
from flowstate.cli import app as cli
from tests.composition.graphs import nested
from tests.durable.graphs import research_graph


def test_parse_age():
    assert (
        parse_age("30d") == 30 * 86400
        and parse_age("90m") == 5400
        and parse_age("2w") == 14 * 86400
    )
    with pytest.raises(ValueError, match=r"e\.g\. 30d"):
        parse_age("thirty days")


def test_prune_deletes_runs_and_everything_hanging_off_them(tmp_path):
    db = str(tmp_path / "x.db")
    app = nested(3).compile(store=db)
    old = app.run_sync({}, run_id="old")
    keep = app.run_sync({}, run_id="keep")
    assert old.status == keep.status == "completed"
    paused = research_graph().compile(store=db).run_sync({"topic": "t"}, run_id="paused")
    assert paused.status == "paused"
    with sqlite3.connect(db) as c:  # age the first and third runs
        c.execute(
            "UPDATE runs SET created_at = created_at - 40 * 86400 "
            "WHERE id IN ('old', 'paused') OR id LIKE 'old/%'"
        )
    # updated mhash is unaffected: created_at is an immutable, hashed column -> re-hash
    from flowstate.checkpoints import row_hash
    from flowstate.checkpoints._common import RUN_IMMUTABLE as _RUN_IMMUTABLE

    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        for r in c.execute("SELECT * FROM runs").fetchall():
            c.execute(
                "UPDATE runs SET hash = ? WHERE id = ?",
                [row_hash(*(r[k] for k in _RUN_IMMUTABLE)), r["id"]],
            )
    assert prune(app.store, older_than=parse_age("30d"), status="completed", dry_run=True) == [
        "old"
    ]
    deleted = prune(app.store, older_than=parse_age("30d"), status="completed")
    assert deleted == ["old"]
    with sqlite3.connect(db) as c:
        for table, col in (("runs", "id"), ("writes", "run_id"), ("steps", "run_id")):
            n = c.execute(
                f"SELECT count(*) FROM {table} WHERE {col} = 'old' OR {col} LIKE 'old/%'"
            ).fetchone()[0]
            assert n == 0, table
        assert c.execute("SELECT count(*) FROM runs WHERE id LIKE 'keep%'").fetchone()[0] == 3
    assert app.get_state("keep") == keep.state
    # without a status filter the old paused run goes too
    out = CliRunner().invoke(cli, ["prune", "--older-than", "30d", "--db", db])
    assert out.exit_code == 0 and "deleted 1 run" in out.output
    assert app.store.find_run("paused") is None


def test_doctor_reports_and_vacuums(tmp_path):
    db = str(tmp_path / "x.db")
    app = nested(2).compile(store=db)
    for _ in range(5):
        app.run_sync({})
    rep = doctor(app.store)
    assert rep.ok and rep.rows["runs"] == 10 and rep.rows["writes"] > 0
    assert rep.largest_runs and rep.largest_runs[0][1] > 0
    out = CliRunner().invoke(cli, ["doctor", "--db", db, "--vacuum"])
    assert out.exit_code == 0, out.output
    assert "integrity ok" in out.output and "vacuum freed" in out.output


def test_doctor_on_a_damaged_file(tmp_path):
    db = tmp_path / "x.db"
    app = nested(2).compile(store=str(db))
    for _ in range(20):
        app.run_sync({})
    app.store.close()
    raw = bytearray(db.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 4096] = b"\xde\xad\xbe\xef" * 1024
    db.write_bytes(bytes(raw))
    for suffix in ("-wal", "-shm"):
        p = tmp_path / f"x.db{suffix}"
        if p.exists():
            p.unlink()
    time.sleep(0.01)
    out = CliRunner().invoke(cli, ["doctor", "--db", str(db)])
    assert out.exit_code == 1
    assert "integrity" in out.output and "ok" not in out.output.split("integrity")[1][:4]


def test_large_effect_results_are_stored_once_by_content_hash(tmp_path):
    import asyncio

    from pydantic import BaseModel

    from flowstate import END, START, GraphBuilder, NodeContext

    class S(BaseModel):
        topic: str
        size: int = 0

    big = "lorem ipsum " * 5000  # ~60 kB, like a long LLM answer

    async def fetch(s: S, ctx: NodeContext) -> dict:
        async def get(topic: str) -> str:
            return big

        text = await ctx.effect("llm", get, s.topic)
        return {"size": len(text)}

    def done(s: S) -> dict:
        return {}

    g = GraphBuilder(S).add_node(fetch).add_node(done)
    g.add_edge(START, "fetch").add_edge("fetch", "done").add_edge("done", END)
    db = tmp_path / "x.db"
    app = g.compile(store=str(db))
    app.run_sync({"topic": "t"}, run_id="parent")
    for i in range(5):  # forks that re-use the parent's journaled answer
        asyncio.run(app.fork("parent", at=0, reuse_effects=True, new_run_id=f"f{i}"))
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM effects").fetchone()[0] == 6
        assert c.execute("SELECT count(*) FROM blobs").fetchone()[0] == 1
        stored = c.execute("SELECT sum(length(data)) FROM blobs").fetchone()[0]
        refs = c.execute("SELECT sum(length(response)) FROM effects").fetchone()[0]
    assert stored == len(big) + 2 and refs < 6 * 100
    assert app.store.effects("f3")[0].response == f'"{big}"'
    assert app.get_state("f3").size == len(big)
    # deleting every run that refers to it deletes the blob too
    for rid in ("parent", "f0", "f1", "f2", "f3"):
        app.store.delete_run(rid)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM blobs").fetchone()[0] == 1
    app.store.delete_run("f4")
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM blobs").fetchone()[0] == 0


def test_a_tampered_blob_is_a_typed_error(tmp_path):
    import asyncio

    test_large_effect_results_are_stored_once_by_content_hash  # noqa: B018 - same graph
    from pydantic import BaseModel

    from flowstate import END, START, CorruptRowError, GraphBuilder, NodeContext

    class S(BaseModel):
        n: int = 0

    async def fetch(s: S, ctx: NodeContext) -> dict:
        async def get() -> str:
            return "x" * 20000

        await ctx.effect("llm", get)
        return {"n": 1}

    app = (
        GraphBuilder(S)
        .add_node(fetch)
        .add_edge(START, "fetch")
        .add_edge("fetch", END)
        .compile(store=str(tmp_path / "x.db"))
    )
    app.run_sync({}, run_id="r")
    with sqlite3.connect(tmp_path / "x.db") as c:
        c.execute("UPDATE blobs SET data = replace(data, 'x', 'y')")
    with pytest.raises(CorruptRowError, match=r"blob .* fails its hash"):
        app.store.effects("r")
    with pytest.raises(CorruptRowError):
        asyncio.run(app.replay("r"))
