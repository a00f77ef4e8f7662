"""Real engine graphs on a PostgresStore: same results as on SQLite, crash and resume
(in process and with SIGKILLed processes), and four writer processes on one schema.

RELIABILITY.md G1/G3 on Postgres (R2's worker-kill half, fast tier) and a small R5-style
load: the engine code is unchanged, only the store differs.

The engine binds a graph to any ``CheckpointStore`` object
(``compile(store=PostgresStore(...))``).

Child processes run this module: ``python -c "...test_postgres_engine import child_main"``
(``child`` runs or resumes one reference-graph run; ```writer`` runs linear-10 runs).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flowstate import _crashpoints
from flowstate.checkpoints import SQLiteStore
from flowstate.checkpoints._postgres import MIGRATIONS, PostgresStore
from tests.composition.graphs import map_reduce, nested
from tests.conftest import SimulatedCrash
from tests.refgraphs import GRAPHS, linear

from ._graphs import chain_final, chain_graph, golden_graph
from .conftest import pg_schema, require_postgres

REPO = Path(__file__).resolve().parents[2]
WIDTH = {"linear2": 1, "linear4": 1, "linear20": 1, "fanout_join": 5, "loop": 1}
"""The most activations that can be in flight at once in each reference graph."""

WRITER_CHAIN = 10
RUNS_PER_WRITER = 4


@pytest.fixture
def engine_on_postgres() -> None:
    """The engine takes any ``CheckpointStore`` object (``compile(store=PostgresStore(...))``)."""


@pytest.fixture
def pg(tmp_path: Path, engine_on_postgres: None) -> Iterator[Callable[..., PostgresStore]]:
    dsn = require_postgres()
    opened: list[PostgresStore] = []

    def make(name: str = "s") -> PostgresStore:
        s = PostgresStore(dsn, schema=pg_schema(tmp_path, name))
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def _rows(store: Any, run_id: str) -> dict[str, Any]:
    """Every row of a run without its wall-clock columns, for cross-backend equality."""
    clock = {"created_at", "updated_at", "started_at", "finished_at"}
    run = store.get_run(run_id)
    return {
        "run": run.model_dump(exclude=clock | {"fingerprint", "graph_doc"}),
        "steps": [s.model_dump(exclude=clock) for s in store.steps(run_id)],
        "writes": [w.model_dump(exclude=clock) for w in store.writes(run_id)],
        "effects": [e.model_dump(exclude=clock) for e in store.effects(run_id)],
        "interrupts": [i.model_dump(exclude=clock) for i in store.interrupts(run_id)],
    }


def _history(app: Any, run_id: str) -> list[tuple[Any, ...]]:
    return [
        (h.step, h.node, h.task_path, h.update, h.effects, h.run_id, h.depth)
        for h in app.history(run_id)
    ]


# -- the engine on Postgres gives what it gives on SQLite -----------------------------------------


def test_the_engine_binds_any_store_object(tmp_path: Path) -> None:
    store = PostgresStore(require_postgres(), schema=pg_schema(tmp_path, "unpatched"))
    try:
        r = asyncio.run(golden_graph(store).run({"n": 1}, run_id="e1"))
        assert r.status == "paused"
    finally:
        store.close()


def test_golden_graph_with_effects_interrupt_and_resume_matches_sqlite(
    pg: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    out = []
    for store in (SQLiteStore(tmp_path / "g.db"), pg()):
        app = golden_graph(store)
        first = asyncio.run(app.run({"n": 1}, run_id="e1"))
        assert (first.status, first.step) == ("paused", 1)
        done = asyncio.run(app.resume("e1", value="yes"))
        assert done.status == "completed"
        assert app.get_state("e1") == done.state
        out.append((done.state, _history(app, "e1"), _rows(store, "e1"), store.integrity_check()))
        store.close()
    assert out[1] == out[0]
    assert out[0][0].log == ["g0", "g1", "g2", "g3:33"] and out[0][3] == "ok"


def test_replay_and_fork_of_a_run_recorded_in_postgres(pg: Callable[..., PostgresStore]) -> None:
    store = pg()
    app = golden_graph(store)
    asyncio.run(app.run({"n": 1}, run_id="e1"))
    done = asyncio.run(app.resume("e1", value="yes"))
    report = asyncio.run(app.replay("e1"))
    assert report.identical and report.activations == 4, report.summary()
    fork = asyncio.run(app.fork("e1", at=2, update={"n": 100}, new_run_id="e1-fork"))
    assert fork.status == "completed"
    assert fork.state.log == ["g0", "g1", "g2", "g3:300"] and done.state.n == 33
    run = store.get_run("e1-fork")
    assert (run.parent_id, run.parent_step) == ("e1", 2)
    assert [r.id for r in store.list_runs(parent_id="e1")] == ["e1-fork"]


@pytest.mark.parametrize("graph", ["linear4", "fanout_join", "loop"])
def test_reference_graphs_match_sqlite(
    pg: Callable[..., PostgresStore], tmp_path: Path, graph: str
) -> None:
    results = []
    for store in (SQLiteStore(tmp_path / "ref.db"), pg()):
        # the same sink path: it is an argument of every journaled effect
        app = GRAPHS[graph](str(tmp_path / "sink.db"), 0.0).compile(store=store)
        r = app.run_sync({}, run_id="r")
        assert r.status == "completed"
        results.append((r.state, _history(app, "r"), _rows(store, "r")))
        store.close()
    assert results[1] == results[0]


def test_subgraph_child_runs_and_map_reduce_on_postgres(
    pg: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    """Subgraph activations are child runs ``parent/step/task`` in the same schema;
    ``delete_run`` takes the whole family and nothing else."""
    store = pg()
    sq = SQLiteStore(tmp_path / "nest.db")
    states = []
    for s in (sq, store):
        app = nested(3).compile(store=s)
        states.append(app.run_sync({"x": 1}, run_id="n1").state)
        app.run_sync({"x": 2}, run_id="n10")
        mr = map_reduce().compile(store=s).run_sync({"items": [1, 2, 3, 4]}, run_id="m1")
        assert mr.state.total == 30
    assert states[1] == states[0]
    assert store.child_run_ids("n1") == sq.child_run_ids("n1") == ["n1/1/sub2"]
    assert {r.id for r in store.list_runs(include_children=True)} == {
        r.id for r in sq.list_runs(include_children=True)
    }
    store.delete_run("n1")
    left = {r.id for r in store.list_runs(include_children=True)}
    assert not [i for i in left if i == "n1" or i.startswith("n1/")]
    assert {"n10", "n10/1/sub2", "n10/1/sub2/1/sub3", "m1"} <= left
    sq.close()


# -- crash and resume in process ------------------------------------------------------------------


class CrashingPostgresStore(PostgresStore):
    """A real PostgresStore that "dies" right after its k-th activation commit."""

    def __init__(self, dsn: str, schema: str, crash_after: int | None = None) -> None:
        super().__init__(dsn, schema=schema)
        self.crash_after = crash_after
        self.activation_commits = 0

    def commit(self, run_id, *, writes=(), effects=(), step=None, run_fields=None):  # type: ignore[no-untyped-def]
        super().commit(run_id, writes=writes, effects=effects, step=step, run_fields=run_fields)
        if writes:
            self.activation_commits += 1
            if self.crash_after is not None and self.activation_commits >= self.crash_after:
                raise SimulatedCrash(f"crash after {self.activation_commits} commits")


def _check_final(
    store: PostgresStore, app: Any, run_id: str, golden: Any, sink: Path, graph: str, kills: int
) -> None:
    """As tests/engine: golden state, one write and one effect row per activation, every
    effect delivered under its own key, duplicates only from activations in flight."""
    assert store.get_run(run_id).status == "completed"
    assert app.get_state(run_id) == golden
    n = len(golden.log)
    assert len(store.writes(run_id)) == n
    assert len(store.effects(run_id)) == n
    with sqlite3.connect(sink) as c:
        keys = c.execute("SELECT key, count(*) FROM deliveries GROUP BY key").fetchall()
    assert len(keys) == n
    assert sum(k - 1 for _, k in keys) <= kills * WIDTH[graph]


def test_resume_after_a_simulated_crash_after_each_activation(
    pg: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    """The tests/conftest.py SimulatedCrash pattern: the store dies right after its k-th
    activation commit; a new store object (new connection) resumes the run."""
    base = pg()
    graph = "fanout_join"
    golden = (
        GRAPHS[graph](str(tmp_path / "gold.db"), 0.0)
        .compile(store=base)
        .run_sync({}, run_id="gold")
        .state
    )
    dsn = require_postgres()
    for k in (1, 7, 16):
        rid, sink = f"r{k}", tmp_path / f"sink{k}.db"
        store = CrashingPostgresStore(dsn, base.schema, crash_after=k)
        with pytest.raises(SimulatedCrash):
            GRAPHS[graph](str(sink), 0.0).compile(store=store).run_sync({}, run_id=rid)
        store.close()  # whatever was not committed is gone, as after kill -9
        fresh = PostgresStore(dsn, schema=base.schema)
        assert len(fresh.writes(rid)) >= k
        app = GRAPHS[graph](str(sink), 0.0).compile(store=fresh)
        assert app.resume_sync(rid).status == "completed"
        _check_final(fresh, app, rid, golden, sink, graph, kills=1)
        fresh.close()
    assert base.integrity_check() == "ok"


def test_crash_at_every_crash_point_then_resume(
    pg: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    """The in-process crash-point sweep of tests/engine/test_crash_sweep.py on Postgres:
    at the k-th crash point the process "dies" (a crash inside an open transaction rolls
    it back, as the server does for a dead session), for k = 1, 2, … until a run
    completes without reaching k. Every point is reached; every resume is golden."""
    base = pg()
    graph = "linear2"
    golden = (
        linear(2, str(tmp_path / "gold.db")).compile(store=base).run_sync({}, run_id="gold").state
    )
    dsn = require_postgres()
    points: set[str] = set()
    k = 1
    while True:
        rid, sink = f"r{k}", str(tmp_path / f"sink{k}.db")
        reached: list[str] = []

        def hook(name: str, k: int = k, reached: list[str] = reached) -> None:
            reached.append(name)
            if len(reached) >= k:
                raise SimulatedCrash(name)

        store = PostgresStore(dsn, schema=base.schema)
        app = linear(2, sink).compile(store=store)
        _crashpoints.set_hook(hook)
        try:
            app.run_sync({}, run_id=rid)
            crashed = False
        except SimulatedCrash:
            crashed = True
        finally:
            _crashpoints.set_hook(None)
        store.close()
        points |= set(reached)
        if not crashed:
            break
        fresh = PostgresStore(dsn, schema=base.schema)
        app = linear(2, sink).compile(store=fresh)
        r = app.run_sync({}, run_id=rid) if fresh.find_run(rid) is None else app.resume_sync(rid)
        assert r.status == "completed", k
        _check_final(fresh, app, rid, golden, Path(sink), graph, kills=1)
        fresh.close()
        k += 1
    assert points == set(_crashpoints.POINTS), points
    assert k > 10
    assert base.integrity_check() == "ok"


# -- crash and resume with real processes ------------------------------------------------------
#
# Processes that are killed, and the four writers, are forked from this process (a fork
# starts in milliseconds; a fresh interpreter needs seconds to import flowstate). Each
# opens its own connection after the fork and ends with os._exit, so nothing inherited
# is used or closed. The resume after the kills runs in a fresh interpreter, which knows
# nothing but what is in the database.

_FORK = multiprocessing.get_context("fork")


def _killable_run(
    tx: Connection,
    dsn: str,
    schema: str,
    graph: str,
    run_id: str,
    sink: str,
    delay: float,
    die_at: int | None,
) -> None:
    """Forked child: run one reference-graph run; with ``die_at``, SIGKILL itself at that
    crash point (what FLOWSTATE_CRASH_AT does in a fresh interpreter)."""
    seen = 0

    def hook(name: str) -> None:
        nonlocal seen
        seen += 1
        if seen == die_at:
            os.kill(os.getpid(), signal.SIGKILL)

    _crashpoints.set_hook(hook if die_at else None)
    store = PostgresStore(dsn, schema=schema)
    tx.send(store.conn.info.backend_pid)
    r = GRAPHS[graph](sink, delay).compile(store=store).run_sync({}, run_id=run_id)
    tx.send(r.status)


def _golden_and_crash_points(dsn: str, schema: str, graph: str, sink: str) -> tuple[Any, list[str]]:
    """The uninterrupted run's final state, and the crash points a child running the
    same run passes through, in order, from opening its store."""
    seen: list[str] = []
    _crashpoints.set_hook(seen.append)
    try:
        store = PostgresStore(dsn, schema=schema)
        golden = GRAPHS[graph](sink, 0.0).compile(store=store).run_sync({}, run_id="gold")
    finally:
        _crashpoints.set_hook(None)
    store.close()
    return golden.state, seen


def _gone(admin: psycopg.Connection[Any], backend_pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend_pid]
            ).fetchone()[0]
            == 0
        ):  # type: ignore[index]
            return True
        time.sleep(0.05)
    return False


def test_sigkilled_processes_resume_in_a_new_process_to_the_golden_state(
    pg: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    """Two runs of linear-20 in two processes, both killed with SIGKILL: one from outside
    after its 3rd committed activation, one by itself at a crash point inside an open
    transaction (after its activation's INSERTs, before COMMIT). The server ends each
    dead session and rolls its open transaction back; a new process (a fresh
    interpreter) resumes both runs to the uninterrupted run's final state."""
    dsn = require_postgres()
    base = pg()
    graph = "linear20"
    golden, seq = _golden_and_crash_points(dsn, base.schema, graph, str(tmp_path / "gold.db"))
    commits = [i for i, p in enumerate(seq, 1) if p == "store.before_commit"]
    trials = {"outside": None, "in_transaction": commits[len(commits) // 2]}
    procs, pipes = {}, {}
    for rid, die_at in trials.items():
        rx, tx = _FORK.Pipe(duplex=False)
        delay = 0.05 if die_at is None else 0.0
        p = _FORK.Process(
            target=_killable_run,
            args=(tx, dsn, base.schema, graph, rid, str(tmp_path / f"{rid}.db"), delay, die_at),
        )
        p.start()
        procs[rid], pipes[rid] = p, rx
    backends = {rid: rx.recv() for rid, rx in pipes.items() if rx.poll(30)}
    assert set(backends) == set(trials)
    deadline = time.monotonic() + 30
    while len(base.writes("outside")) < 3:
        assert procs["outside"].is_alive(), "the child ended before it was killed"
        assert time.monotonic() < deadline, "the child made no progress"
        time.sleep(0.01)
    os.kill(procs["outside"].pid, signal.SIGKILL)  # type: ignore[arg-type]
    with psycopg.connect(dsn, autocommit=True) as admin:
        for rid, p in procs.items():
            p.join(30)
            assert p.exitcode == -signal.SIGKILL, (rid, p.exitcode)
            assert _gone(admin, backends[rid]), f"the dead session of {rid} is still open"
    for rid in trials:
        assert base.get_run(rid).status == "running"
        assert 0 < len(base.writes(rid)) < len(golden.log)

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tests.store.test_postgres_engine import "
            "resume_main; resume_main(sys.argv[1:])",
            dsn,
            base.schema,
            graph,
            str(tmp_path),
            *trials,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["completed"] * len(trials), out.stdout
    app = GRAPHS[graph](None, 0.0).compile(store=base)
    for rid in trials:
        _check_final(base, app, rid, golden, tmp_path / f"{rid}.db", graph, kills=1)
    assert base.integrity_check() == "ok"


def resume_main(argv: list[str]) -> None:
    """``DSN SCHEMA GRAPH SINK_DIR RUN...``: resume each run (a fresh interpreter)."""
    dsn, schema, graph, sink_dir, *runs = argv
    store = PostgresStore(dsn, schema=schema)
    for rid in runs:
        app = GRAPHS[graph](str(Path(sink_dir) / f"{rid}.db"), 0.0).compile(store=store)
        print(app.resume_sync(rid).status, flush=True)
    store.close()


# -- four writer processes on one schema ------------------------------------------------------


def _writer(tx: Connection, go: Any, dsn: str, schema: str, jobs: list[tuple[str, int]]) -> None:
    """Forked writer: wait for ``go``, open the store (all writers race to migrate the
    fresh schema), run its runs concurrently on one event loop, send a report."""
    errors: list[str] = []
    completed: list[str] = []
    go.wait(30)
    try:
        store = PostgresStore(dsn, schema=schema)
    except Exception as e:
        tx.send({"completed": [], "errors": [f"open: {type(e).__name__}: {e}"]})
        return
    app = chain_graph(store, WRITER_CHAIN)

    async def one(rid: str, seed: int) -> None:
        try:
            result = await app.run({"seed": seed}, run_id=rid)
            if result.status == "completed":
                completed.append(rid)
            else:
                errors.append(f"{rid} finished {result.status}: {result.reason}")
        except Exception as e:
            errors.append(f"{rid}: {type(e).__name__}: {e}")

    async def all_runs() -> None:
        await asyncio.gather(*(one(rid, seed) for rid, seed in jobs))

    asyncio.run(all_runs())
    store.close()
    tx.send({"completed": completed, "errors": errors})


def test_four_writer_processes_on_one_schema(tmp_path: Path, engine_on_postgres: None) -> None:
    """4 processes open the same *fresh* schema at the same moment (migrations race) and
    each runs 4 linear-10 runs concurrently (one journaled effect per node), while this
    process polls list_runs and get_state every 50 ms through its own store (a fifth
    opener in the race). No error anywhere; all 16 runs golden."""
    dsn = require_postgres()
    schema = pg_schema(tmp_path, "writers")
    go = _FORK.Event()
    procs, pipes = [], []
    jobs: dict[str, int] = {}
    for w in range(4):
        mine = [(f"w{w}-r{i}", 10 * w + i) for i in range(RUNS_PER_WRITER)]
        jobs.update(mine)
        rx, tx = _FORK.Pipe(duplex=False)
        p = _FORK.Process(target=_writer, args=(tx, go, dsn, schema, mine))
        p.start()
        procs.append(p)
        pipes.append(rx)
    reader_errors: list[str] = []
    polls = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal polls
        store = PostgresStore(dsn, schema=schema, min_size=0)  # opens at its first poll
        app = chain_graph(store, WRITER_CHAIN)
        try:
            while not stop.is_set():
                try:
                    for run in store.list_runs(limit=100)[:3]:
                        app.get_state(run.id)
                    polls += 1
                except Exception as e:
                    reader_errors.append(f"{type(e).__name__}: {e}")
                time.sleep(0.05)
        finally:
            store.close()

    go.set()
    reader = threading.Thread(target=poll)
    reader.start()
    reports = []
    try:
        for p, rx in zip(procs, pipes, strict=True):
            assert rx.poll(90), "a writer sent no report"
            reports.append(rx.recv())
            p.join(30)
            assert p.exitcode == 0
    finally:
        stop.set()
        reader.join()
    assert [e for r in reports for e in r["errors"]] == []
    assert sorted(rid for r in reports for rid in r["completed"]) == sorted(jobs)
    assert reader_errors == [] and polls > 0

    store = PostgresStore(dsn, schema=schema)
    try:
        app = chain_graph(store, WRITER_CHAIN)
        for rid, seed in jobs.items():
            assert store.get_run(rid).status == "completed"
            assert app.get_state(rid) == chain_final(seed, WRITER_CHAIN)
            assert len(store.writes(rid)) == WRITER_CHAIN
            assert len(store.effects(rid)) == WRITER_CHAIN
        sizes = store.table_sizes()
        assert sizes["migrations"] == len(MIGRATIONS)
        assert sizes["runs"] == len(jobs)
        assert sizes["writes"] == len(jobs) * WRITER_CHAIN
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_a_changed_effect_request_on_resume_replaces_its_journal_row_on_postgres(
    pg: Callable[..., PostgresStore],
) -> None:
    """Issue 16 item 1: the replace path of the effects journal on Postgres (it raised
    ``KeyError: 'effects'`` and every later resume re-ran the effect)."""
    from flowstate.checkpoints import EffectRecord
    from tests.durable.graphs import no_approval

    store = pg()
    app = no_approval().compile(store=store)
    r = app.run_sync({"topic": "t"}, run_id="s", interrupt_before=["summarise"])
    assert r.status == "paused"
    store.record_effect(
        EffectRecord(
            run_id="s",
            step=1,
            task_path="summarise",
            seq=0,
            name="llm",
            request='{"args":["concerning t-0, t-1, t-2"],"kwargs":{}}',
            response='"old summary"',
            created_at=0.0,
        )
    )
    r = asyncio.run(app.resume("s"))
    assert r.status == "completed" and r.state.summary == "summary of about t-0, t-1, t-2"
    journal = store.effects("s", 1, "summarise")
    assert [e.response for e in journal] == ['"summary of about t-0, t-1, t-2"']
    assert "concerning" not in journal[0].request
