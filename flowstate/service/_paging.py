"""Listing tasks: keyset cursors over runs (newest first, stable under inserts), and the
fields every task summary shows."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from flowstate.checkpoints import CheckpointStore, RunRecord

from ._http import ApiError

__all__ = [
    "CURSOR_PATTERN",
    "decode_cursor",
    "encode_cursor",
    "iter_runs",
    "page_runs",
    "summary_fields",
]

CURSOR_PATTERN = r"^[0-9]{1,20}(\.[0-9]{1,40})?~[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
"""A cursor is ``<created_at>~<id>`` of the last task of the previous page: a keyset
position. Any string of this shape is a valid position, so any cursor fitting the
published pattern gets a page."""


def encode_cursor(run: RunRecord) -> str:
    at = repr(run.created_at)
    if "e" in at:  # not a plausible timestamp, but keep the cursor exact and plain
        at = format(Decimal(run.created_at), "f")
    return f"{at}~{run.id}"


def decode_cursor(cursor: str) -> tuple[float, str]:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ApiError(400, "the cursor is not one this server handed out")
    at, _, run_id = cursor.partition("~")
    return float(at), run_id


def page_runs(
    store: CheckpointStore,
    *,
    status: str | None,
    graph: str | None,
    limit: int,
    after: tuple[float, str] | None,
) -> tuple[list[RunRecord], bool]:
    """Up to ``limit`` runs, newest first (created_at DESC, id ASC), strictly after the
    keyset position ``after``. Stable: runs created later never shift a page. Returns the
    runs and whether more follow."""
    want = limit + 1
    fetch = want
    while True:
        before = math.nextafter(after[0], math.inf) if after else None
        rows = store.list_runs(status=status, graph=graph, limit=fetch, before=before)
        exhausted = len(rows) < fetch
        if after is not None:
            at, rid = after
            rows = [r for r in rows if not (r.created_at == at and r.id <= rid)]
        if len(rows) >= want or exhausted:
            return rows[:limit], len(rows) > limit
        fetch *= 4  # ties at the cursor's timestamp filled the fetch: read further


def iter_runs(store: CheckpointStore, status: str) -> Iterator[RunRecord]:
    after: tuple[float, str] | None = None
    while True:
        rows, more = page_runs(store, status=status, graph=None, limit=500, after=after)
        yield from rows
        if not more or not rows:
            return
        after = (rows[-1].created_at, rows[-1].id)


def summary_fields(run: RunRecord) -> dict[str, Any]:
    failed = run.status == "failed"
    return {
        "id": run.id,
        "graph": run.graph,
        "status": run.status,
        "reason": None if failed else run.error,
        "error": run.error if failed else None,
        "head_step": run.head_step,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
    }
