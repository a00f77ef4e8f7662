"""The public surface is small and pinned (STYLE.md 1)."""

from __future__ import annotations

import flowstate
import flowstate.checkpoints
import flowstate.engine
from flowstate.cli import app as cli_app


def test_top_level_all_is_pinned():
    # order is enforced by ruff (RUF022, isort-style); here: no duplicates
    assert len(set(flowstate.__all__)) == len(flowstate.__all__)
    assert set(flowstate.__all__) == {
        "END",
        "START",
        "Command",
        "CompiledGraph",
        "CorruptRowError",
        "EditRefused",
        "EditWhileRunning",
        "FlowstateError",
        "GraphBuildError",
        "GraphBuilder",
        "GraphMismatch",
        "HistoryEntry",
        "InputRejected",
        "LeaseLost",
        "Limits",
        "PayloadTooLarge",
        "PendingInterrupt",
        "NodeContext",
        "NodeFailed",
        "Overwrite",
        "Reducer",
        "ReplayDivergence",
        "RetryPolicy",
        "RunNotFound",
        "RunOwned",
        "RunResult",
        "RunStateError",
        "SQLiteStore",
        "Send",
        "StateMutated",
        "StepCloseFailed",
        "StoreError",
        "StoreIOError",
        "ThreadBusy",
        "TimedOut",
        "UpdateRejected",
        "WriteConflict",
        "add",
        "add_schedule",
        "append",
        "fire_schedules",
        "merge",
        "wake_due",
    }
    for name in flowstate.__all__:
        assert not name.startswith("_")
        assert hasattr(flowstate, name)


def test_package_alls_resolve():
    for mod in (flowstate.engine, flowstate.checkpoints):
        assert len(set(mod.__all__)) == len(mod.__all__)
        for name in mod.__all__:
            assert hasattr(mod, name), name


def test_every_cli_command_has_help_and_a_docs_entry():
    from pathlib import Path

    ref = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "cli.md").read_text()
    commands = cli_app.registered_commands
    assert commands
    for c in commands:
        name = c.name or c.callback.__name__
        assert c.help or c.callback.__doc__, f"command {name} has no help"
        assert f"### {name}\n" in ref, f"docs/reference/cli.md has no section for `{name}`"
