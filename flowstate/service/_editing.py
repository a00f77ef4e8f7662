"""Editing a task's state over HTTP: resume's ``update``/``goto`` (issue 19)."""

from __future__ import annotations

from typing import Any

from flowstate.engine import CompiledGraph
from flowstate.errors import EditRefused, RunStateError, UpdateRejected

from ._http import ApiError

__all__ = ["edit_before_resume"]


def edit_before_resume(
    graph: CompiledGraph[Any],
    run_id: str,
    update: dict[str, Any] | None,
    goto: list[str] | None,
    answering: bool,
) -> None:
    """Resume's ``update``/``goto``: the edit is stored (``update_state``) before the task
    is queued, so a crash before a slot frees keeps it."""
    if goto and answering:
        raise ApiError(
            409,
            f"goto={goto} drops the activations waiting for the answer given; answer "
            "first, then resume with goto",
            code=EditRefused.code,
        )
    try:
        graph.update_state(run_id, update or {}, goto=goto)
    except UpdateRejected as e:
        raise ApiError(422, e.message, code=e.code) from None
    except RunStateError as e:  # EditRefused, EditWhileRunning
        raise ApiError(409, e.message, code=e.code) from None
