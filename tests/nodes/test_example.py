"""examples/llm_agent.py runs offline, and through the real SDK against the local server."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.llm.conftest import TEST_KEY
from tests.llm.messages_server import MessagesServer, message, text, tool_use

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llm_agent.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llm_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the state's annotations through it
    spec.loader.exec_module(module)
    return module


def test_example_runs_offline_in_a_fresh_process() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert "completed" in out.stdout
    assert 'call: population(city="Lyon")' in out.stdout
    assert "Lyon and Nantes: 845,454 people in all." in out.stdout
    assert "tokens in all: 810 in, 75 out" in out.stdout


@pytest.mark.anyio
async def test_example_runs_against_the_messages_api(
    server: MessagesServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    server.reply(
        message(
            tool_use("population", {"city": "Lille"}, id="toolu_1"),
            tool_use("population", {"city": "Atlantis"}, id="toolu_2"),
            usage=(300, 40),
        ),
        message(text("Lille has 236,710 people; I know nothing of Atlantis."), usage=(420, 15)),
    )

    code = await load_example().main(["--llm", "anthropic:claude-test", "--question", "Lille?"])

    out = capsys.readouterr().out
    assert code == 0
    assert "result: 236710" in out
    assert "no data for 'Atlantis'" in out and "(error)" in out
    # llm_node caches the conversation by default: the server reports cache writes and
    # reads from its own estimate of the prompt, so the input count is its, not the queued 720.
    assert re.search(r"tokens in all: \d+ in, 55 out \(\d+ of the input read from", out)
    assert "cache_control" in json.dumps(server.bodies[1])
    assert server.bodies[0]["model"] == "claude-test"
