"""Every graph in examples/ survives a crash at every point and replays offline
(issue 4, item 6: the testing helpers used on the project's own examples)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from flowstate.testing import assert_replays, assert_resumable

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CASES: list[tuple[str, str, dict[str, Any], Any]] = [
    ("crash_resume", "build", {"topic": "durable agents"}, None),
    ("llm_agent", "graph", None, None),
    ("react_agent", "graph", None, None),
    ("planners", "dag", {"goal": "How many people live in Lyon and Nantes together?"}, None),
    ("crews", "graph", None, None),
    ("service_graphs", "support", {"text": "please refund the invoice"}, True),
]


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _input(module: Any, given: dict[str, Any] | None) -> dict[str, Any]:
    if given is not None:
        return given
    for attr in ("EXAMPLE_INPUT", "DEFAULT_INPUT"):
        if hasattr(module, attr):
            return dict(getattr(module, attr))
    for attr in ("DEFAULT_TASK", "TASK", "QUESTION", "DEFAULT_QUESTION"):
        if hasattr(module, attr):
            value = getattr(module, attr)
            return {"task": value} if "question" not in attr.lower() else {"question": value}
    pytest.skip(f"example {module.__name__} has no default input to test with")


@pytest.mark.parametrize(("name", "factory", "given", "answer"), CASES, ids=[c[0] for c in CASES])
def test_example_graph_is_resumable_and_replays(
    name, factory, given, answer, fast_tmp, monkeypatch
):
    monkeypatch.setenv("DEMO_STAGE_SECONDS", "0")
    module = _load(name)
    builder = getattr(module, factory)()
    app = builder.compile(store=str(fast_tmp / f"{name}.db"))
    if hasattr(module, "offline_llm"):
        app.services["llm"] = module.offline_llm()
    inp = _input(module, given)
    report = assert_resumable(
        app, inp, workdir=fast_tmp, value=(lambda payload: answer) if answer is not None else None
    )
    assert report.crash_points > 5
    r = app.run_sync(inp, run_id="recorded")
    if r.status == "paused" and answer is not None:
        r = app.resume_sync("recorded", value=answer)
    assert r.status == "completed"
    assert_replays(app, "recorded")
