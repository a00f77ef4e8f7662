"""A full disk under the service (issue 16 item 3).

A real tmpfs of a few MiB holds the database; tasks are executing when a filler file
takes every free byte, so SQLite's next commit fails with SQLITE_FULL. Before the fix the
tasks stayed ``running`` with nothing executing them until a restart and ``/ready``
answered 200. Now ``/ready`` answers 503 while writes fail, and once the filler is gone
the service's store supervisor sees a probe write pass and resumes the orphaned tasks
itself: every task completes, each node's update committed exactly once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ThreadServer, wait_for
from .graphs import STEP_NODES


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test (root only)."""
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root/CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    assert os.statvfs(path.parent).f_bavail == 0


def _full_disk_trial(small_fs: Path, serve, calls_db: str, n_tasks: int) -> None:
    srv: ThreadServer = serve(db=str(small_fs / "runs.db"), store_probe_seconds=0.2)
    c = srv.client()
    assert c.get("/ready").status_code == 200
    ids = [
        c.post(
            "/v1/tasks", json={"graph": "steps", "input": {"label": str(i), "delay": 0.4}}
        ).json()["id"]
        for i in range(n_tasks)
    ]
    for t in ids:
        wait_for(c, t, ("running",))
    filler = small_fs / "filler"
    _fill(filler)
    deadline = time.monotonic() + 30
    while True:  # the next commits fail: readiness says so
        r = c.get("/ready")
        if r.status_code == 503:
            break
        assert time.monotonic() < deadline, "/ready stayed 200 on a full disk"
        time.sleep(0.05)
    assert "fails writes" in r.json()["detail"], r.json()
    while len(srv.service.health.orphans) < n_tasks:  # each task's next commit fails
        assert time.monotonic() < deadline, srv.service.health.orphans
        time.sleep(0.05)
    time.sleep(1.0)  # still full: nothing recovers, nothing is failed
    assert c.get("/ready").status_code == 503
    assert all(c.get(f"/v1/tasks/{t}").json()["status"] != "failed" for t in ids)
    filler.unlink()  # space again: no restart, the service recovers by itself
    for t in ids:
        body = wait_for(c, t, ("completed", "failed"), timeout=60)
        assert body["status"] == "completed", body
    assert c.get("/ready").status_code == 200
    assert srv.service.health.recovered >= 1 and not srv.service.health.orphans
    for t in ids:
        hist = c.get(f"/v1/tasks/{t}").json()
        assert [s["node"] for s in hist["steps"]] == STEP_NODES, hist


def test_a_full_disk_is_reported_and_its_tasks_recover_without_restart(
    small_fs: Path, serve, calls_db: str
) -> None:
    _full_disk_trial(small_fs, serve, calls_db, n_tasks=3)


@pytest.mark.slow
def test_a_full_disk_with_many_tasks(small_fs: Path, serve, calls_db: str) -> None:
    _full_disk_trial(small_fs, serve, calls_db, n_tasks=8)
