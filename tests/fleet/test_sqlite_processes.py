"""Several ``flowstate worker`` processes on one SQLite file (one machine): every queued
run completed exactly once, checked in the store (each node's update applied once, one
write row per activation); a worker ``kill -9``-ed mid-run has its runs finished by
another; SIGTERM drains; in the slow tier, more runs, kills and frozen (SIGSTOP-ped)
workers whose late commits are refused."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstate.checkpoints import RunQueue, SQLiteStore
from tests.fleet import fleet_graphs as fg
from tests.fleet.conftest import start_worker, stop_workers, wait_until

ROOT = Path(__file__).resolve().parents[2]


class LocalFleet:
    """Worker processes on one SQLite file."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = tmp / "runs.db"
        self.procs: list[subprocess.Popen[bytes]] = []

    def worker(self, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        p = start_worker(self.tmp, str(self.db), *args, env=env, name=f"worker{len(self.procs)}")
        self.procs.append(p)
        return p

    def close(self) -> None:
        stop_workers(self.procs)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalFleet]:
    f = LocalFleet(tmp_path)
    try:
        yield f
    finally:
        f.close()


def _pid(owner: Any) -> int | None:
    try:
        return int(str(owner).rsplit(":", 2)[1])
    except (IndexError, ValueError):
        return None


def _running_by(store: SQLiteStore, pid: int) -> list[str]:
    rows = store._read("SELECT id, owner FROM runs WHERE status = 'running'")
    return [str(r[0]) for r in rows if _pid(r[1]) == pid]


def _completed(store: SQLiteStore) -> int:
    return int(store._read("SELECT count(*) FROM runs WHERE status = 'completed'")[0][0])


def _exactly_once(store: SQLiteStore, ids: list[str], nodes: int) -> None:
    app = fg.chain(nodes, 0).bind(store)
    expected = [f"n{i}" for i in range(nodes)]
    for run_id in ids:
        run = app.get_run(run_id)
        assert run.status == "completed", (run_id, run.status, run.error)
        # one write row per activation (the primary key allows no second), and each
        # node's update applied once: `seen` is an append reducer
        assert sorted(w.node for w in store.writes(run_id)) == expected, run_id
        assert app.get_state(run_id).seen == expected, run_id
    assert RunQueue(store).queued() == []


def test_workers_on_one_file_complete_each_run_once_through_a_kill_and_a_drain(
    local: LocalFleet,
) -> None:
    """3 workers, 60 runs: one is ``kill -9``-ed holding runs (a 30 s lease: only its dead
    pid frees them quickly, as it does on one machine), one is told to stop (SIGTERM)
    holding runs and hands them back; the third finishes everything."""
    nodes, sleep = 5, 0.1
    env = {"FLEET_NODES": str(nodes), "FLEET_SLEEP": str(sleep)}
    store = SQLiteStore(local.db)
    app = fg.chain(nodes, sleep).bind(store)
    ids = [app.enqueue({}).id for _ in range(60)]
    args = ("--concurrency", "3", "--lease-ttl", "30", "--poll", "0.5", "--drain-timeout", "0")
    workers = [local.worker(*args, env=env) for _ in range(3)]

    def holder(after: int, among: list[subprocess.Popen[bytes]]) -> Any:
        if _completed(store) < after:
            return None
        for p in among:
            held = _running_by(store, p.pid)
            if held:
                return p, held
        return None

    got: Any = None

    def found(after: int, among: list[subprocess.Popen[bytes]]) -> bool:
        nonlocal got
        got = holder(after, among)
        return got is not None

    # generous: on a loaded machine a worker process takes minutes to start
    wait_until(lambda: found(10, workers), 300, "a worker holding runs after 10 completions")
    victim, held = got
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    taken = wait_until(
        lambda: all(_pid(store.lease(r)[0]) != victim.pid for r in held), 60, "the takeover"
    )
    rest = [p for p in workers if p is not victim]
    wait_until(lambda: found(25, rest), 120, "a worker holding runs after 25 completions")
    drained, handed = got
    drained.send_signal(signal.SIGTERM)
    assert drained.wait(60) == 0
    log = Path(drained.log_path).read_text()  # type: ignore[attr-defined]
    assert all(f"handed back run {r}" in log for r in handed) or all(
        app.get_run(r).status == "completed" for r in handed
    ), log[-2000:]
    wait_until(lambda: _completed(store) == len(ids), 180, "every run")
    (last,) = [p for p in rest if p is not drained]
    last.send_signal(signal.SIGTERM)
    assert last.wait(60) == 0
    _exactly_once(store, ids, nodes)
    # a hand-back is not an attempt; the kill is one, recorded as the reason
    dead_pid = str(victim.pid)
    for run_id in held:
        assert len(store.writes(run_id)) == nodes
    states = {w.pid: w.state for w in RunQueue(store).workers()}
    assert states[drained.pid] == states[last.pid] == "stopped"
    assert states[victim.pid] == "running"  # it never said goodbye
    print(
        f"killed worker {dead_pid} held {len(held)} run(s), taken over in {taken:.2f}s "
        f"(lease 30 s); drained worker handed back {len(handed)}"
    )


@pytest.mark.slow
def test_four_workers_300_runs_with_kills_and_zombies(local: LocalFleet) -> None:
    """4 workers, 300 runs, 5 ``kill -9`` s (each replaced) and 2 workers frozen with
    SIGSTOP past their lease, then woken: nothing lost, nothing committed twice."""
    nodes, sleep, ttl = 5, 0.05, 2.0
    env = {"FLEET_NODES": str(nodes), "FLEET_SLEEP": str(sleep)}
    store = SQLiteStore(local.db)
    app = fg.chain(nodes, sleep).bind(store)
    ids = [app.enqueue({}).id for _ in range(300)]
    args = ("--concurrency", "3", "--lease-ttl", str(ttl), "--poll", "0.5")
    live = [local.worker(*args, env=env) for _ in range(4)]
    blows = ["kill", "stop", "kill", "kill", "stop", "kill", "kill"]
    marks = [int(300 * (i + 1) / (len(blows) + 2)) for i in range(len(blows))]
    takeovers: list[float] = []
    zombies: list[subprocess.Popen[bytes]] = []
    deadline = time.monotonic() + 600
    while blows:
        assert time.monotonic() < deadline
        done = _completed(store)
        if done >= len(ids) - 24:
            # the workers outran the blows (each blow waits for its takeover): more work,
            # so that every blow still finds a worker with runs to take away
            ids += [app.enqueue({}).id for _ in range(60)]
        if done < marks[0]:
            time.sleep(0.05)
            continue
        victim = next((p for p in live if _running_by(store, p.pid)), None)
        if victim is None:
            time.sleep(0.05)
            continue
        held = _running_by(store, victim.pid)
        blow, _ = blows.pop(0), marks.pop(0)
        live.remove(victim)
        victim.send_signal(signal.SIGKILL if blow == "kill" else signal.SIGSTOP)
        t0 = time.monotonic()
        if blow == "stop":
            # woken past its lease whatever happened meanwhile: a process frozen while it
            # holds the file's write lock stops every writer until it runs again (SQLite
            # locks do not expire), so its runs may only be taken over after it wakes
            time.sleep(ttl + 1.0)
            victim.send_signal(signal.SIGCONT)
            zombies.append(victim)
            live.append(victim)
        wait_until(
            lambda v=victim, h=held: all(_pid(store.lease(r)[0]) != v.pid for r in h),
            120,
            "a takeover",
        )
        takeovers.append(time.monotonic() - t0)
        if blow == "kill":
            victim.wait(10)
            live.append(local.worker(*args, env=env))
    wait_until(lambda: _completed(store) == len(ids), 600, "every run")
    # a replacement still starting has no SIGTERM handler yet (it would die of it)
    wait_until(
        lambda: {p.pid for p in live} <= {w.pid for w in RunQueue(store).workers()},
        300,
        "every live worker registered",
    )
    for p in live:
        p.send_signal(signal.SIGTERM)
    for p in live:
        assert p.wait(60) == 0
    _exactly_once(store, ids, nodes)
    print(f"takeovers (s): {sorted(round(t, 2) for t in takeovers)}")
