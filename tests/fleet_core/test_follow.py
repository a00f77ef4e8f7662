"""Item 0c of issue 20: the events of a run come from the store, so a client of a
service process sees a run that another real process executes (SSE), on PostgreSQL
(woken by LISTEN/NOTIFY) and on SQLite (polling)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flowstate.service import GraphRegistry, create_app
from tests.service.conftest import ThreadServer
from tests.store.conftest import pg_schema, require_postgres

from .gated import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def _db(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return str(tmp_path / "runs.db")
    return f"{require_postgres()}?schema={pg_schema(tmp_path, 'follow')}"


def _events(lines: Any, until: str) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(id, kind, data) of the SSE events read until one of kind ``until``."""
    out: list[tuple[str | None, str, dict[str, Any]]] = []
    ident: str | None = None
    kind = ""
    for line in lines:
        if line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            out.append((ident, kind, json.loads(line[6:])))
            if kind == until:
                return out
    return out


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_sse_of_a_service_follows_a_run_executing_in_another_process(
    kind: str, tmp_path: Path
) -> None:
    db = _db(kind, tmp_path)
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fleet_core.gated", db, "far", str(gate)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with ThreadServer(create_app(GraphRegistry(REGISTRY), db=db)) as server:
            client = server.client(timeout=60)
            deadline = time.monotonic() + 60
            while client.get("/v1/tasks/far").status_code == 404:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
                time.sleep(0.05)
            with client.stream("GET", "/v1/tasks/far/events") as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                # live: the run is blocked on the gate in the other process
                head = _events(lines, until="node_started")
                while head and head[-1][2].get("node") != "wait_gate":
                    more = _events(lines, until="node_started")
                    assert more, f"the stream ended after {[k for _, k, _ in head]}"
                    head += more
                assert head, "the stream ended before any event"
                assert proc.poll() is None and not gate.exists()
                gate.touch()
                opened = time.monotonic()
                tail = _events(lines, until="run_finished")
                took = time.monotonic() - opened
        seen = head + tail
        kinds = [k for _, k, _ in seen]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
        assert seen[-1][2]["status"] == "completed" and seen[-1][2]["run_id"] == "far"
        finished = [d["node"] for _, k, d in seen if k == "node_finished"]
        assert finished == ["before", "wait_gate", "after"]
        ids = [int(i) for i, _, _ in seen if i is not None]
        assert ids == list(range(1, len(seen) + 1))  # each stored event once, in order
        assert took < 30, took
        assert proc.wait(60) == 0 and proc.stdout is not None
        assert proc.stdout.read().strip() == "completed"

        # a client that reconnects with Last-Event-ID gets the rest, not everything again
        with ThreadServer(create_app(GraphRegistry(REGISTRY), db=db)) as server:
            again = server.client(timeout=30)
            with again.stream(
                "GET", "/v1/tasks/far/events", headers={"Last-Event-ID": str(ids[-3])}
            ) as r:
                rest = _events(r.iter_lines(), until="run_finished")
        assert [int(i) for i, _, _ in rest if i] == ids[-2:]
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_follower_ends_with_the_status_of_a_run_without_stored_events(tmp_path: Path) -> None:
    """A run finished elsewhere before events were kept (or whose events were pruned)
    replays its final status only."""
    from flowstate.checkpoints import SQLiteStore

    db = tmp_path / "runs.db"
    app = REGISTRY[0].bind(SQLiteStore(db))
    (tmp_path / "gate").touch()
    done = app.run_sync({"gate": str(tmp_path / "gate")}, run_id="old")
    assert done.status == "completed"
    with SQLiteStore(db).write() as c:
        c.execute("DELETE FROM events")
    with ThreadServer(create_app(GraphRegistry(REGISTRY), db=str(db))) as server:
        r = server.client().get("/v1/tasks/old/events")
    assert r.status_code == 200
    got = _events(iter(r.text.splitlines()), until="run_finished")
    assert [(k, d["status"]) for _, k, d in got] == [("run_finished", "completed")]
