"""examples/crews.py runs offline, and its coordinator crew runs through the real Anthropic SDK
against the local Messages API server (which rejects what the real API would reject)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.llm.conftest import TEST_KEY
from tests.llm.messages_server import MessagesServer, message, text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "crews.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crews_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_example_runs_every_crew_offline_in_a_fresh_process() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    for kind in ("orchestrator", "debate", "pipeline", "coordinator"):
        assert f"== {kind} crew: run " in out.stdout
    assert out.stdout.count("status done") == 4
    assert "coordinator → writer       [delegate]" in out.stdout
    assert "debater_2 → moderator    [answer] Nantes" in out.stdout


def test_example_graph_is_loadable_by_the_cli() -> None:
    app = load_example().graph().compile(store=":memory:")
    assert set(app.ir.nodes) == {"coordinator", "economist", "geographer", "writer"}


@pytest.mark.anyio
async def test_coordinator_crew_runs_against_the_messages_api(
    server: MessagesServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    server.reply(
        message(
            text("DELEGATE economist: compare office costs\nCONTEXT: 20 people"), usage=(300, 20)
        ),
        message(text("Nantes is about 10% cheaper."), usage=(120, 10)),
        message(text("ANSWER: Nantes, to keep costs down."), usage=(350, 12)),
    )

    code = await load_example().main(
        ["--llm", "anthropic:claude-test", "--crew", "coordinator", "--task", "Lyon or Nantes?"]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    assert "answer: Nantes, to keep costs down." in out
    assert "tokens: 770 in, 42 out" in out
    bodies = server.bodies
    assert [b["model"] for b in bodies] == ["claude-test"] * 3
    assert "coordinator of a crew" in bodies[0]["system"]
    assert bodies[1]["system"].startswith("You are the economist")
    assert bodies[1]["messages"][0]["content"] == (
        "Task from coordinator: compare office costs\n\nContext from coordinator: 20 people"
    )
    assert "economist → you: Nantes is about 10% cheaper." in bodies[2]["messages"][0]["content"]
    assert all("tools" not in b for b in bodies)
