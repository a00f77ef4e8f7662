"""The live view of a running graph, and printing its result."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from rich.live import Live
from rich.table import Table

from ._common import console


class _LiveView:
    """A live table of activations, fed by the engine's event stream."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, str, str], list[str]] = {}
        self.status = "running"
        self.live: Live | None = None

    def table(self) -> Table:
        t = Table(title=f"run: {self.status}", expand=False)
        for col in ("step", "node", "status", "ms", "update"):
            t.add_column(col)
        for row in list(self.rows.values())[-30:]:
            t.add_row(*row)
        return t

    def __call__(self, e: Any) -> None:
        kind = getattr(e, "kind", "")
        rid = getattr(e, "run_id", "")
        if kind == "node_started":
            self.rows[(e.step, e.task_path, rid)] = [
                str(e.step),
                _nested(rid, e.task_path),
                "[yellow]running",
                "",
                "",
            ]
        elif kind == "node_finished":
            upd = json.dumps(e.update)
            self.rows[(e.step, e.task_path, rid)] = [
                str(e.step),
                _nested(rid, e.task_path),
                "[green]done",
                f"{e.duration_ms:.0f}",
                upd if len(upd) < 70 else upd[:67] + "...",
            ]
        elif kind == "node_retrying":
            self.rows[(e.step, e.task_path, rid)] = [
                str(e.step),
                _nested(rid, e.task_path),
                f"[yellow]retry {e.attempt}",
                "",
                e.error,
            ]
        elif kind == "node_failed":
            self.rows[(e.step, e.task_path, rid)] = [
                str(e.step),
                _nested(rid, e.task_path),
                "[red]failed",
                "",
                e.error[:70],
            ]
        elif kind == "run_finished" and "/" not in rid:
            self.status = e.status
        if self.live is not None:
            self.live.update(self.table())


def _nested(run_id: str, path: str) -> str:
    depth = run_id.count("/") // 2
    return ("  " * depth + "└ " if depth else "") + path


def _print_result(result: Any) -> None:
    console.print(
        f"run [bold]{result.run_id}[/] {result.status}"
        + (f": {result.reason}" if result.reason else ""),
        highlight=False,
    )
    for i in getattr(result, "interrupts", []) or []:
        console.print(
            f"waiting for input [{i.id}] in {i.task_path}: {json.dumps(i.payload)}",
            highlight=False,
            markup=False,
        )
    console.print_json(result.state.model_dump_json())


def _drive(coro_fn: Callable[[Callable[[Any], None]], Any], quiet: bool) -> Any:
    view = _LiveView()
    if quiet or not console.is_terminal:
        return asyncio.run(coro_fn(view))
    with Live(view.table(), console=console, refresh_per_second=8) as live:
        view.live = live
        return asyncio.run(coro_fn(view))
