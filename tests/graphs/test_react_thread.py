"""The ReAct agent as a multi-turn chat on a thread: each turn sees the earlier turns'
messages, memory recalls what earlier turns stored, every turn replays offline (the model
is never called again), and examples/chat.py runs with the scripted model."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from flowstate.graphs import MemorySpec, react_agent, react_turn
from flowstate.llm import ScriptedLLM

ROOT = Path(__file__).resolve().parents[2]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_example", ROOT / "examples" / "chat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_chat_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert asyncio.run(_example().main([])) == 0
    out = capsys.readouterr().out
    assert "agent: Lyon has 522,250 people." in out
    assert "agent: Together they have 845,454 people." in out  # from turns 1 and 2
    assert "thread 'chat': 3 turns, 12 messages" in out


def test_react_turns_see_earlier_turns_remember_and_replay_without_the_model(
    tmp_path: Path,
) -> None:
    chat = _example()
    llm = ScriptedLLM(chat.offline_model)
    memory = MemorySpec(namespace="chat")
    app = react_agent(llm, [chat.population, chat.add], max_steps=6, memory=memory).compile(
        store=tmp_path / "chat.db"
    )
    first = app.run_sync({"task": chat.MESSAGES[0]}, thread_id="c")
    second = app.run_sync(react_turn(chat.MESSAGES[1]), thread_id="c")
    third = app.run_sync(react_turn(chat.MESSAGES[2]), thread_id="c")
    assert [r.state.answer for r in (first, second, third)] == [
        "Lyon has 522,250 people.",
        "Nantes has 323,204 people.",
        "Together they have 845,454 people.",
    ]
    # the second turn's first model call carried the whole first turn
    asked = next(r for r in llm.requests if r.messages[-1].text == chat.MESSAGES[1])
    assert asked.messages[0].text == chat.MESSAGES[0]
    assert asked.messages[-2].text == "Lyon has 522,250 people."
    # memory keeps working across turns: what turn 1 stored is recalled in turn 2
    assert "Relevant memories" in (asked.system or "") and "522250" in (asked.system or "")
    assert len(app.memory_store().memory("episodic", "chat").inspect()) >= 4
    # the third turn's state is every turn's steps and messages, one status and answer
    assert third.state.status == "answered" and len(third.state.messages) == 12
    calls = len(llm.requests)
    for r in (first, second, third):
        assert asyncio.run(app.replay(r.run_id)).identical
    assert len(llm.requests) == calls  # replay never called the model
