"""examples/react_agent.py and examples/planners.py run offline, and the ReAct example through
the real SDK against the local Messages API server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.llm.conftest import TEST_KEY
from tests.llm.messages_server import MessagesServer, message, text, tool_use

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_example", ROOT / "examples" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_react_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert await load("react_agent.py").main(["--protocol", "text"]) == 0
    out = capsys.readouterr().out
    assert "agent answered after 4 turns" in out
    assert 'action:  population({"city": "Lyon"})' in out
    assert "answer: Lyon and Nantes: 845,454 people in all." in out


@pytest.mark.anyio
async def test_react_example_runs_against_the_messages_api(
    server: MessagesServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    server.reply(
        message(tool_use("population", {"city": "Lille"}, id="toolu_1")),
        message(text("Lille has 236,710 people.")),
    )
    code = await load("react_agent.py").main(["--llm", "anthropic:claude-test", "--task", "Lille?"])
    out = capsys.readouterr().out
    assert code == 0
    assert "observe: 236710" in out and "answer: Lille has 236,710 people." in out
    assert server.bodies[0]["model"] == "claude-test"


@pytest.mark.anyio
async def test_planners_example_runs_offline_and_replans(
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = load("planners.py")
    assert await module.main([]) == 0
    out = capsys.readouterr().out
    for kind in ("sequential", "hierarchical", "dag"):
        assert f"{kind} planner, run" in out
    assert out.count("answer: Lyon and Nantes have 845,454 inhabitants together.") == 3

    assert await module.main(["--planner", "dag", "--fail"]) == 0
    out = capsys.readouterr().out
    assert "(replans: 1)" in out and "failed once: step 2" in out


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_react_example_with_memory_recalls_on_either_backend(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ReAct-with-memory example: a second run recalls what the first one stored, in the
    same database (an SQLite file, or the Postgres store's schema)."""
    from flowstate.checkpoints import SQLiteStore
    from flowstate.checkpoints._postgres import PostgresStore
    from flowstate.memory import PostgresMemoryStore
    from tests.store.conftest import drop_pg_schema, pg_schema, require_postgres

    module = load("react_agent.py")
    args = ["--memory", "agent:cities"]
    db = str(tmp_path / "runs.db")
    dsn = schema = ""
    stores: list[Any] = [None, None]
    if backend == "sqlite":
        args += ["--db", db]
    else:
        dsn, schema = require_postgres(), pg_schema(tmp_path, "example")
        stores = [PostgresStore(dsn, schema=schema), PostgresStore(dsn, schema=schema)]
    try:
        assert await module.main(args, store=stores[0]) == 0
        first = capsys.readouterr().out
        assert "memory 'agent:cities': 4 entries" in first  # 3 observations and the answer
        assert await module.main(args, store=stores[1]) == 0
        second = capsys.readouterr().out
        assert "answer: Lyon and Nantes: 845,454 people in all." in second
        assert "memory 'agent:cities': 8 entries" in second
        # the second run's journaled recall returned the first run's answer
        run_id = second.split("run ", 1)[1].split(":", 1)[0]
        checkpoints = SQLiteStore(db) if backend == "sqlite" else stores[1]
        recalls = [
            e.response for e in checkpoints.effects(run_id) if e.name.startswith("memory.retrieve")
        ]
        assert recalls and "Lyon and Nantes: 845,454 people in all." in recalls[0]
        if backend == "postgres":
            memories = PostgresMemoryStore(dsn, schema=schema)
            sources = sorted(str(e.metadata["source"]) for e in memories.entries("agent:cities"))
            assert sources == ["answer"] * 2 + ["observation"] * 6
            memories.close()
    finally:
        if backend == "postgres":
            for store in stores:
                store.close()
            drop_pg_schema(schema)
