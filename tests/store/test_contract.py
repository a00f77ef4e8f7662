"""The checkpoint-store contract: every backend must pass these tests unchanged.

Each test is a function of the ``store`` (or ``store_factory``) fixture, which
``conftest.py`` parametrises over ``STORE_BACKENDS``. Tests that check an SQLite mechanism
(pragmas, ``BEGIN IMMEDIATE``) are marked ``sqlite_only`` and skip on other backends.

The interface itself is ``flowstate.checkpoints.CheckpointStore`` (with the ``LeaseStore``
capability): the first tests pin that every backend implements each of its methods with
the documented signature.

What is pinned: run creation and lookup, ``list_runs`` filters and ordering, one
transaction per ``commit`` (G1) with nothing left behind when it fails (G4), the effects
journal's first-write-wins idempotency, interrupts, signals, ``update_run``'s guard,
``delete_run`` with child runs, step lookups, durability pragmas (G2) and ``BEGIN
IMMEDIATE`` for every write transaction (G6).
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from typing import Any

import pytest

from flowstate.checkpoints import CheckpointStore, LeaseStore, SQLiteStore
from flowstate.errors import FlowstateError, RunNotFound, StoreError

from ._graphs import golden_graph
from .conftest import Rec, StoreFactory


def sqlite_only(store: Any) -> None:
    if not isinstance(store, SQLiteStore):
        pytest.skip("checks an SQLite mechanism")


def dump(store: Any, run_id: str) -> dict[str, Any]:
    """Everything the store holds for one run, through the public readers."""
    return {
        "run": store.find_run(run_id),
        "steps": store.steps(run_id),
        "writes": store.writes(run_id),
        "effects": store.effects(run_id),
        "interrupts": store.interrupts(run_id),
        "attempts": store.attempts(run_id),
        "signals": store.signals(run_id),
    }


def populate(store: Any, rec: Rec, run_id: str, **run_kw: Any) -> None:
    """A run with a row in every table: steps 0..2, writes, effects, an interrupt,
    an attempt and a signal."""
    store.create_run(rec.run(run_id, **run_kw), rec.step(run_id, 0, snapshot='{"n":0}'))
    store.commit(
        run_id,
        writes=[rec.write(run_id, 0, "a")],
        effects=[rec.effect(run_id, 0, "a")],
        step=rec.step(run_id, 1),
        run_fields={"status": "running", "head_step": 1, "error": None},
    )
    store.record_effect(rec.effect(run_id, 1, "b", 0))
    store.record_interrupt(
        rec.interrupt(run_id, 1, "b"),
        {"status": "paused", "error": "interrupt in 'b'", "head_step": 1},
    )
    store.record_attempt(rec.attempt(run_id, 1, "b"))
    store.send_signal(run_id, "pause")


# -- the interface --------------------------------------------------------------------------------


def _protocol_methods(proto: type) -> list[str]:
    return sorted(n for n, v in vars(proto).items() if callable(v) and not n.startswith("_"))


def test_every_store_implements_the_protocol_with_its_signatures(store: Any) -> None:
    assert isinstance(store, CheckpointStore)
    assert isinstance(store, LeaseStore)
    methods = _protocol_methods(CheckpointStore) + _protocol_methods(LeaseStore)
    assert len(methods) >= 30
    assert "usage_totals" in methods and "record_attempt" in methods
    for name in methods:
        proto = next(p for p in (LeaseStore, CheckpointStore) if name in vars(p))
        want = inspect.signature(vars(proto)[name])
        got = inspect.signature(getattr(type(store), name))
        shape = lambda sig: [  # noqa: E731
            (p.name, p.kind, p.default) for p in sig.parameters.values()
        ]
        assert shape(got) == shape(want), f"{type(store).__name__}.{name}{got} != {want}"


def test_migrate_run_rewrites_every_json_row_or_nothing(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r"), rec.step("r", 0, snapshot='{"n":0}'))
    store.commit(
        "r",
        writes=[rec.write("r", 0, "a"), rec.write("r", 0, "b", seq=1)],
        step=rec.step("r", 1, snapshot='{"n":1}'),
    )
    before = dump(store, "r")

    def bad(raw: str) -> str:
        if '"n":1' in raw:
            raise ValueError("cannot convert")
        return raw.replace('"n"', '"m"')

    with pytest.raises(ValueError, match="cannot convert"):
        store.migrate_run(
            "r",
            state=lambda raw: raw.replace('"n"', '"m"'),
            update=bad,
            fingerprint="x" * 64,
            graph_doc="{}",
        )
    assert dump(store, "r") == before

    store.migrate_run(
        "r",
        state=lambda raw: raw.replace('"n"', '"m"'),
        update=lambda raw: raw.replace('"n"', '"m"'),
        fingerprint="x" * 64,
        graph_doc="{}",
    )
    run = store.get_run("r")
    assert (run.input, run.fingerprint, run.graph_doc) == ('{"m":0}', "x" * 64, "{}")
    assert [st.snapshot for st in store.steps("r")] == ['{"m":0}', '{"m":1}']
    assert [w.update for w in store.writes("r")] == ['{"m":1}', '{"m":1}']
    with pytest.raises(RunNotFound):
        store.migrate_run("ghost", state=str, update=str, fingerprint="", graph_doc="")
    store.shrink_wal()  # best effort, never raises
    assert dump(store, "r")["writes"] == store.writes("r")


# -- runs -----------------------------------------------------------------------------------------


def test_create_run_then_get_run_returns_the_same_records(store: Any, rec: Rec) -> None:
    run = rec.run("r1", parent_id=None, config='{"max_steps": 5}')
    step0 = rec.step("r1", 0, snapshot='{"n":0}')
    store.create_run(run, step0)

    assert store.get_run("r1") == run
    assert store.find_run("r1") == run
    assert store.get_step("r1", 0) == step0
    assert store.steps("r1") == [step0]
    assert store.latest_step("r1") == step0


def test_get_run_of_an_unknown_id_raises_run_not_found(store: Any) -> None:
    with pytest.raises(RunNotFound) as ei:
        store.get_run("nope")
    assert ei.value.run_id == "nope"
    assert "'nope'" in str(ei.value)
    assert store.find_run("nope") is None
    assert store.latest_step("nope") is None
    assert store.steps("nope") == []


def test_create_run_with_a_taken_id_fails_and_keeps_the_first_run(store: Any, rec: Rec) -> None:
    first = rec.run("r1")
    step0 = rec.step("r1", 0, snapshot='{"n":0}')
    store.create_run(first, step0)

    with pytest.raises(FlowstateError) as ei:
        store.create_run(rec.run("r1", graph="other"), rec.step("r1", 0, snapshot='{"n":9}'))
    assert "'r1'" in str(ei.value)
    assert store.get_run("r1") == first
    assert store.steps("r1") == [step0]


def test_list_runs_orders_newest_first_then_by_id(store: Any, rec: Rec) -> None:
    for rid, t in [("b", 10.0), ("a", 10.0), ("c", 30.0), ("d", 20.0)]:
        store.create_run(rec.run(rid, created_at=t), rec.step(rid, 0))

    assert [r.id for r in store.list_runs()] == ["c", "d", "a", "b"]
    assert [r.id for r in store.list_runs(limit=2)] == ["c", "d"]
    assert [r.id for r in store.list_runs(before=20.0)] == ["a", "b"]
    assert [r.id for r in store.list_runs(before=10.0)] == []


def test_list_runs_filters_by_status_graph_and_parent(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("p1", graph="g1"), rec.step("p1", 0))
    store.create_run(rec.run("p2", graph="g2"), rec.step("p2", 0))
    store.create_run(rec.run("p3", graph="g1"), rec.step("p3", 0))
    store.update_run("p3", status="completed")
    store.create_run(
        rec.run("fork", graph="g1", parent_id="p1", parent_step=2), rec.step("fork", 0)
    )
    store.create_run(
        rec.run("p1/2/sub", graph="g2", parent_id="p1", parent_step=2), rec.step("p1/2/sub", 0)
    )

    def ids(**kw: Any) -> set[str]:
        return {r.id for r in store.list_runs(**kw)}

    assert ids() == {"p1", "p2", "p3", "fork"}, "child runs (ids with '/') are hidden"
    assert ids(include_children=True) == {"p1", "p2", "p3", "fork", "p1/2/sub"}
    assert ids(status="completed") == {"p3"}
    assert ids(status="running", graph="g1") == {"p1", "fork"}
    assert ids(graph="g2", include_children=True) == {"p2", "p1/2/sub"}
    assert ids(parent_id="p1") == {"fork"}
    assert ids(parent_id="p1", include_children=True) == {"fork", "p1/2/sub"}
    assert ids(status="paused") == set()


@pytest.mark.parametrize("evil", ["x' OR '1'='1", "running' --", "%", 'g1") OR 1=1 --'])
def test_list_runs_filter_values_are_bound_parameters(store: Any, rec: Rec, evil: str) -> None:
    """A filter value is data, never SQL (CVE-2025-67644 class)."""
    store.create_run(rec.run("r1", graph="g1"), rec.step("r1", 0))
    assert store.list_runs(status=evil) == []
    assert store.list_runs(graph=evil) == []
    assert store.list_runs(parent_id=evil) == []


# -- commit: one transaction per activation (G1, G4) ----------------------------------------------


def test_commit_lands_writes_effects_step_and_run_fields_together(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0, snapshot='{"n":0}'))
    before = store.get_run("r1")
    w = rec.write("r1", 0, "a")
    e0, e1 = rec.effect("r1", 0, "a", 0), rec.effect("r1", 0, "a", 1)
    s1 = rec.step("r1", 1)

    store.commit(
        "r1",
        writes=[w],
        effects=[e0, e1],
        step=s1,
        run_fields={"status": "completed", "head_step": 1, "error": None},
    )

    assert store.writes("r1") == [w]
    assert store.effects("r1") == [e0, e1]
    assert store.steps("r1")[-1] == s1
    assert store.latest_step("r1") == s1
    run = store.get_run("r1")
    assert (run.status, run.head_step, run.error) == ("completed", 1, None)
    assert run.updated_at >= before.updated_at
    assert run.model_dump(exclude={"status", "head_step", "updated_at"}) == before.model_dump(
        exclude={"status", "head_step", "updated_at"}
    )


def test_commit_with_some_run_fields_changes_only_those(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    store.commit("r1", writes=[rec.write("r1", 0, "a")], run_fields={"head_step": 3})
    run = store.get_run("r1")
    assert (run.status, run.head_step, run.error) == ("running", 3, None)


def test_commit_replaces_the_step_row_of_the_same_step(store: Any, rec: Rec) -> None:
    """A step row is re-committed whole when a step boundary is retried."""
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    store.commit("r1", step=rec.step("r1", 1, tasks="[]"))
    again = rec.step("r1", 1, tasks='[{"node": "x", "path": "x"}]')
    store.commit("r1", step=again)
    assert store.steps("r1", 1) == [again]


def _failing_commits(rec: Rec) -> dict[str, tuple[dict[str, Any], type[BaseException]]]:
    """Commits that fail at different points of the transaction."""
    new_write = rec.write("r1", 1, "b")
    effects = [rec.effect("r1", 1, "b", 0)]
    step2 = rec.step("r1", 2)
    return {
        # the second write of the batch hits the UNIQUE (run, step, task_path) key
        "duplicate_write_in_batch": (
            dict(
                writes=[new_write, rec.write("r1", 0, "a", update='{"n":99}')],
                effects=effects,
                step=step2,
                run_fields={"status": "completed", "head_step": 2, "error": None},
            ),
            Exception,
        ),
        # everything is inserted, then the run-field guard refuses an immutable column
        "immutable_run_field_at_the_end": (
            dict(
                writes=[new_write],
                effects=effects,
                step=step2,
                run_fields={"head_step": 2, "graph": "other"},
            ),
            ValueError,
        ),
        # everything is inserted, then the run is not found
        "unknown_run_at_the_end": (
            dict(writes=[new_write], effects=effects, step=step2, run_fields={"head_step": 2}),
            RunNotFound,
        ),
    }


@pytest.mark.parametrize(
    "case", ["duplicate_write_in_batch", "immutable_run_field_at_the_end", "unknown_run_at_the_end"]
)
def test_a_failing_commit_leaves_no_partial_rows(store: Any, rec: Rec, case: str) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0, snapshot='{"n":0}'))
    store.commit(
        "r1",
        writes=[rec.write("r1", 0, "a")],
        step=rec.step("r1", 1),
        run_fields={"status": "running", "head_step": 1, "error": None},
    )
    before = dump(store, "r1")
    kwargs, exc = _failing_commits(rec)[case]
    target = "ghost" if case == "unknown_run_at_the_end" else "r1"

    with pytest.raises(exc):
        store.commit(target, **kwargs)

    assert dump(store, "r1") == before
    assert store.writes("ghost") == [] and store.effects("ghost") == []
    # the store is usable afterwards: the transaction was closed
    store.commit("r1", writes=[rec.write("r1", 1, "b")])
    assert [w.task_path for w in store.writes("r1")] == ["a", "b"]


def test_a_second_commit_of_the_same_activation_is_refused_and_the_first_kept(
    store: Any, rec: Rec
) -> None:
    """G4: at most one committed row per (run, step, task_path)."""
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    first = rec.write("r1", 0, "a", update='{"n":1}')
    store.commit("r1", writes=[first])
    with pytest.raises(Exception):  # noqa: B017 - the type is pinned by the test below
        store.commit(
            "r1",
            writes=[rec.write("r1", 0, "a", update='{"n":2}')],
            step=rec.step("r1", 1),
            run_fields={"head_step": 1},
        )
    assert store.writes("r1") == [first]
    assert store.latest_step("r1").step == 0
    assert store.get_run("r1").head_step == 0


def test_a_duplicate_commit_raises_a_store_error(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    store.commit("r1", writes=[rec.write("r1", 0, "a")])
    with pytest.raises(StoreError) as ei:
        store.commit("r1", writes=[rec.write("r1", 0, "a", update='{"n":2}')])
    assert "r1" in str(ei.value) and "'a'" in str(ei.value)


def test_a_commit_for_an_unknown_run_raises_run_not_found(store: Any, rec: Rec) -> None:
    with pytest.raises(RunNotFound):
        store.commit(
            "ghost",
            writes=[rec.write("ghost", 0, "a")],
            run_fields={"status": "running", "head_step": 1, "error": None},
        )
    assert store.writes("ghost") == []


def test_commit_refuses_immutable_run_fields_on_every_path(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1", graph="g"), rec.step("r1", 0))
    with pytest.raises(ValueError, match="graph"):
        store.commit(
            "r1", run_fields={"status": "running", "head_step": 1, "error": None, "graph": "other"}
        )
    assert store.get_run("r1").head_step == 0


# -- effects journal ------------------------------------------------------------------------------


def test_effects_journal_keeps_the_first_record_of_a_key(store: Any, rec: Rec) -> None:
    """INSERT OR IGNORE on (run, step, task_path, seq): a re-run that journals the same
    effect again (at-least-once window, G3) never overwrites the recorded result."""
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    first = rec.effect("r1", 0, "a", 0, response='{"v":1}')
    store.record_effect(first)
    store.record_effect(rec.effect("r1", 0, "a", 0, response='{"v":2}'))
    store.commit(
        "r1",
        writes=[rec.write("r1", 0, "a")],
        effects=[rec.effect("r1", 0, "a", 0, response='{"v":3}')],
    )
    assert store.effects("r1") == [first]


def test_record_effect_replace_overwrites_the_record_of_its_key(store: Any, rec: Rec) -> None:
    """``replace=True`` (a resumed activation whose effect request changed ran the effect
    again) overwrites the journal row of that key on every backend; other keys stay."""
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    store.record_effect(rec.effect("r1", 0, "a", 0, response='{"v":1}'))
    other = rec.effect("r1", 0, "a", 1, response='{"v":9}')
    store.record_effect(other)
    new = rec.effect("r1", 0, "a", 0, response='{"v":2}')
    store.record_effect(new, replace=True)
    assert store.effects("r1") == [new, other]
    store.record_effect(rec.effect("r1", 0, "a", 0, response='{"v":3}'))
    assert store.effects("r1") == [new, other]


def test_effects_filter_and_order(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    store.create_run(rec.run("r2"), rec.step("r2", 0))
    made = [
        rec.effect("r1", s, p, q)
        for s, p, q in [(1, "b", 1), (0, "z", 0), (1, "a", 0), (1, "b", 0), (0, "a", 2)]
    ]
    for e in made:
        store.record_effect(e)
    store.record_effect(rec.effect("r2", 0, "a", 0))

    key = [(e.step, e.task_path, e.seq) for e in store.effects("r1")]
    assert key == [(0, "a", 2), (0, "z", 0), (1, "a", 0), (1, "b", 0), (1, "b", 1)]
    assert [(e.task_path, e.seq) for e in store.effects("r1", 1)] == [("a", 0), ("b", 0), ("b", 1)]
    assert [e.seq for e in store.effects("r1", 1, "b")] == [0, 1]
    assert [e.seq for e in store.effects("r1", task_path="a")] == [2, 0]
    assert store.effects("r1", 7) == []


# -- interrupts, attempts, signals ----------------------------------------------------------------


def test_record_interrupt_pauses_the_run_in_the_same_transaction(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    intr = rec.interrupt("r1", 0, "a", 0)
    store.record_interrupt(intr, {"status": "paused", "error": "interrupt in 'a'", "head_step": 0})
    assert store.interrupts("r1") == [intr]
    run = store.get_run("r1")
    assert (run.status, run.error) == ("paused", "interrupt in 'a'")

    with pytest.raises(RunNotFound):
        store.record_interrupt(rec.interrupt("ghost", 0), {"status": "paused"})
    assert store.interrupts("ghost") == [], "the interrupt row was rolled back with the run update"


def test_answer_interrupt_replaces_the_row_and_filters_by_step(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    i0 = rec.interrupt("r1", 0, "b", 1)
    i1 = rec.interrupt("r1", 0, "a", 0)
    i2 = rec.interrupt("r1", 2, "a", 0)
    for i in (i0, i1, i2):
        store.record_interrupt(i, {"status": "paused"})
    assert store.interrupts("r1") == [i1, i0, i2]
    assert store.interrupts("r1", 0) == [i1, i0]
    assert store.interrupts("r1", 1) == []

    store.answer_interrupt(i0, '"yes"')
    assert store.interrupts("r1", 0) == [i1, i0.model_copy(update={"answer": '"yes"'})]
    assert len(store.interrupts("r1")) == 3


def test_attempts_are_listed_in_order(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    made = [
        rec.attempt("r1", 1, "b", 2),
        rec.attempt("r1", 0, "a", 1),
        rec.attempt("r1", 1, "b", 1),
    ]
    for a in made:
        store.record_attempt(a)
    assert store.attempts("r1") == [made[1], made[2], made[0]]


def test_signals_are_idempotent_per_kind_and_per_run(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    store.create_run(rec.run("r2"), rec.step("r2", 0))
    assert store.signals("r1") == set()
    store.send_signal("r1", "pause")
    store.send_signal("r1", "pause")
    store.send_signal("r1", "cancel")
    store.send_signal("r2", "pause")
    assert store.signals("r1") == {"pause", "cancel"}
    store.clear_signals("r1")
    assert store.signals("r1") == set()
    assert store.signals("r2") == {"pause"}


# -- update_run -----------------------------------------------------------------------------------


def test_update_run_changes_only_mutable_fields(store: Any, rec: Rec) -> None:
    run = rec.run("r1")
    store.create_run(run, rec.step("r1", 0))
    got = store.update_run("r1", status="failed", error="node 'a' failed", head_step=4)
    assert got == store.get_run("r1")
    assert (got.status, got.error, got.head_step) == ("failed", "node 'a' failed", 4)
    assert got.updated_at > run.updated_at
    assert got.model_dump(exclude={"status", "error", "head_step", "updated_at"}) == run.model_dump(
        exclude={"status", "error", "head_step", "updated_at"}
    )

    store.update_run("r1", error=None)
    assert store.get_run("r1").error is None
    assert store.get_run("r1").status == "failed"


@pytest.mark.parametrize("field", ["graph", "input", "fingerprint", "created_at", "id", "bogus"])
def test_update_run_refuses_immutable_fields(store: Any, rec: Rec, field: str) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    before = store.get_run("r1")
    with pytest.raises(ValueError, match=field):
        store.update_run("r1", status="failed", **{field: "x"})
    assert store.get_run("r1") == before


def test_update_run_of_an_unknown_run_raises_run_not_found(store: Any) -> None:
    with pytest.raises(RunNotFound):
        store.update_run("ghost", status="failed")


# -- delete_run -----------------------------------------------------------------------------------


def test_delete_run_removes_child_runs_and_everything_hanging_off_them(
    store: Any, rec: Rec
) -> None:
    family = ["p", "p/3/node", "p/3/node/1/inner", "p/4/send[0]"]
    others = ["p2", "p2/3/node", "q", "q/1/p", "px/3/node"]
    for rid in family + others:
        populate(store, rec, rid)
    kept = {rid: dump(store, rid) for rid in others}

    store.delete_run("p")

    for rid in family:
        d = dump(store, rid)
        assert d == {
            "run": None,
            "steps": [],
            "writes": [],
            "effects": [],
            "interrupts": [],
            "attempts": [],
            "signals": set(),
        }, rid
        with pytest.raises(RunNotFound):
            store.get_run(rid)
    for rid in others:
        assert dump(store, rid) == kept[rid], f"{rid} was touched by delete_run('p')"


@pytest.mark.parametrize(
    ("victim", "bystander"),
    [
        ("a_b", "axb"),  # '_' is a LIKE wildcard
        ("a%b", "aXYb"),  # '%' is a LIKE wildcard
        ("Job", "job"),  # LIKE is case-insensitive for ASCII
        ("a\\b", "ab"),  # '\\' was the unescaped LIKE escape character
    ],
)
def test_delete_run_never_touches_the_children_of_another_run(
    store: Any, rec: Rec, victim: str, bystander: str
) -> None:
    for rid in (victim, f"{victim}/1/n", bystander, f"{bystander}/1/n"):
        populate(store, rec, rid)
    kept = {rid: dump(store, rid) for rid in (bystander, f"{bystander}/1/n")}

    store.delete_run(victim)

    assert store.find_run(victim) is None
    assert store.find_run(f"{victim}/1/n") is None, "the run's own child was not deleted"
    assert store.steps(f"{victim}/1/n") == []
    for rid, d in kept.items():
        assert dump(store, rid) == d, f"{rid} was touched by delete_run({victim!r})"


def test_delete_run_of_an_unknown_run_is_a_no_op(store: Any, rec: Rec) -> None:
    populate(store, rec, "r1")
    before = dump(store, "r1")
    store.delete_run("ghost")
    assert dump(store, "r1") == before


# -- child runs and maintenance -------------------------------------------------------------------


def test_child_run_ids_lists_only_the_direct_children(store: Any, rec: Rec) -> None:
    children = ["p/3/node", "p/4/send[0]", "p/12/node"]
    not_children = [
        "p",
        "p/3/node/1/inner",  # a grandchild
        "p/x/node",  # not the shape parent/<step>/<task>
        "p/3",
        "p/3/",
        "P/3/node",  # ids are case-sensitive
        "px/3/node",
        "p2/3/node",
        "q/1/p",
    ]
    for rid in children + not_children:
        store.create_run(rec.run(rid), rec.step(rid, 0))
    store.create_run(rec.run("fork", parent_id="p", parent_step=3), rec.step("fork", 0))

    assert sorted(store.child_run_ids("p")) == sorted(children)
    assert store.child_run_ids("p/3/node") == ["p/3/node/1/inner"]
    assert store.child_run_ids("P") == ["P/3/node"]
    assert store.child_run_ids("ghost") == []
    assert store.child_run_ids("p/4/send[0]") == []


@pytest.mark.parametrize("parent", ["a_b", "a%b", "a\\b", "Job", "ü/1/ß"])
def test_child_run_ids_match_the_parent_id_exactly(store: Any, rec: Rec, parent: str) -> None:
    lookalikes = {"a_b": "axb", "a%b": "aXYb", "a\\b": "ab", "Job": "job", "ü/1/ß": "ü/1/s"}
    for rid in (parent, f"{parent}/1/n", lookalikes[parent], f"{lookalikes[parent]}/1/n"):
        store.create_run(rec.run(rid), rec.step(rid, 0))
    assert store.child_run_ids(parent) == [f"{parent}/1/n"]


def _payload_bytes(*records: Any) -> int:
    cols = ("update", "goto", "usage", "tasks", "joins", "snapshot", "request", "response")
    return sum(
        len(getattr(r, c).encode())
        for r in records
        for c in cols
        if c in type(r).model_fields and getattr(r, c) is not None
    )


def test_table_sizes_and_largest_runs(store: Any, rec: Rec) -> None:
    big = "x" * 5000
    s0 = rec.step("big", 0, snapshot=f'{{"s":"{big}"}}')
    w = rec.write("big", 0, "a", update=f'{{"s":"{big}é"}}')
    e = rec.effect("big", 0, "a", response=f'{{"v":"{big}"}}')
    s1 = rec.step("big", 1)
    store.create_run(rec.run("big"), s0)
    store.commit("big", writes=[w], effects=[e], step=s1)
    small = rec.step("small", 0)
    store.create_run(rec.run("small"), small)
    store.create_run(rec.run("small/0/n"), rec.step("small/0/n", 0))
    store.create_run(rec.run("empty"), rec.step("empty", 0, tasks="[]"))

    sizes = store.table_sizes()
    expected = {
        "runs": 4,
        "steps": 5,
        "writes": 1,
        "effects": 1,
        "interrupts": 0,
        "attempts": 0,
        "signals": 0,
    }
    assert {k: sizes[k] for k in expected} == expected
    assert all(isinstance(v, int) for v in sizes.values())

    top = store.largest_runs(10)
    assert top[0] == ("big", _payload_bytes(s0, s1, w, e))
    assert dict(top)["small"] == _payload_bytes(small)
    assert [rid for rid, _ in top] == ["big", "small", "small/0/n", "empty"]
    assert store.largest_runs(1) == top[:1]


# -- steps ----------------------------------------------------------------------------------------


def test_latest_step_last_snapshot_and_step_ranges(store: Any, rec: Rec) -> None:
    s = [
        rec.step("r1", 0, snapshot='{"n":0}'),
        rec.step("r1", 1),
        rec.step("r1", 2, snapshot='{"n":2}'),
        rec.step("r1", 3),
        rec.step("r1", 4),
    ]
    store.create_run(rec.run("r1"), s[0])
    for st in s[1:]:
        store.commit("r1", step=st)
    store.create_run(rec.run("r2"), rec.step("r2", 0, snapshot='{"n":5}'))

    assert store.latest_step("r1") == s[4]
    assert store.get_step("r1", 2) == s[2]
    assert store.get_step("r1", 9) is None
    assert store.last_snapshot("r1", 4) == s[2]
    assert store.last_snapshot("r1", 2) == s[2]
    assert store.last_snapshot("r1", 1) == s[0]
    assert store.last_snapshot("r1", -1) is None
    assert store.last_snapshot("ghost", 4) is None
    assert store.steps("r1") == s
    assert store.steps("r1", 1, 3) == s[1:3]
    assert store.steps("r1", 3) == s[3:]


def test_writes_are_ordered_by_step_then_merge_order(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    ws = [
        rec.write("r1", 1, "b", seq=1),
        rec.write("r1", 0, "a"),
        rec.write("r1", 1, "c", seq=0),
        rec.write("r1", 2, "d"),
    ]
    for w in ws:
        store.commit("r1", writes=[w])
    assert [(w.step, w.task_path) for w in store.writes("r1")] == [
        (0, "a"),
        (1, "c"),
        (1, "b"),
        (2, "d"),
    ]
    assert [w.task_path for w in store.writes("r1", 1, 2)] == ["c", "b"]
    assert [w.task_path for w in store.writes("r1", 1)] == ["c", "b", "d"]
    assert store.visit_counts("r1") == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_usage_totals_sum_the_committed_activations(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r1"), rec.step("r1", 0))
    assert store.usage_totals("r1") == (0, {"input_tokens": 0, "output_tokens": 0})
    used = ['{"input_tokens": 7, "output_tokens": 2}', "{}", '{"input_tokens": 3, "cache_read": 5}']
    for step, usage in enumerate(used):
        store.commit("r1", writes=[rec.write("r1", step, f"n{step}", usage=usage)])
    assert store.usage_totals("r1") == (
        3,
        {"input_tokens": 10, "output_tokens": 2, "cache_read": 5},
    )
    assert store.usage_totals("ghost") == (0, {"input_tokens": 0, "output_tokens": 0})


def test_rows_survive_closing_and_reopening_the_store(
    store_factory: StoreFactory, rec: Rec
) -> None:
    s1 = store_factory("reopen")
    populate(s1, rec, "r1")
    before = dump(s1, "r1")
    s1.close()
    s2 = store_factory("reopen")  # migrations are applied again: a no-op
    assert dump(s2, "r1") == before


# -- SQLite mechanisms: durability pragmas (G2), BEGIN IMMEDIATE (G6) -----------------------------


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_durability_sets_wal_and_synchronous(
    store_factory: StoreFactory, durability: str, synchronous: int
) -> None:
    s = store_factory(durability, durability=durability)
    sqlite_only(s)
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    assert s.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    # journal_mode=WAL is persistent: a fresh connection of any program sees it
    other = sqlite3.connect(s.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


@pytest.mark.parametrize("bad", ["NORMAL", "off", "extra", "", None])
def test_invalid_durability_names_the_choices(store_factory: StoreFactory, bad: Any) -> None:
    with pytest.raises(ValueError) as ei:
        store_factory("bad", durability=bad)
    msg = str(ei.value)
    assert "'normal'" in msg and "'full'" in msg
    assert repr(bad) in msg


def _write_ops(store: Any, rec: Rec) -> list[tuple[str, Any]]:
    """One of every write operation of the store, including two that fail midway."""
    r = "r1"
    return [
        ("create_run", lambda: store.create_run(rec.run(r), rec.step(r, 0, snapshot="{}"))),
        (
            "commit",
            lambda: store.commit(
                r,
                writes=[rec.write(r, 0, "a")],
                effects=[rec.effect(r, 0, "a")],
                step=rec.step(r, 1),
                run_fields={"status": "running", "head_step": 1, "error": None},
            ),
        ),
        (
            "commit_partial",
            lambda: store.commit(r, writes=[rec.write(r, 1, "b")], run_fields={"head_step": 2}),
        ),
        ("commit_failing", lambda: store.commit(r, writes=[rec.write(r, 0, "a")])),
        ("record_effect", lambda: store.record_effect(rec.effect(r, 1, "b", 3))),
        (
            "record_interrupt",
            lambda: store.record_interrupt(rec.interrupt(r, 1, "b"), {"status": "paused"}),
        ),
        ("answer_interrupt", lambda: store.answer_interrupt(rec.interrupt(r, 1, "b"), '"y"')),
        ("record_attempt", lambda: store.record_attempt(rec.attempt(r, 1, "b"))),
        ("update_run", lambda: store.update_run(r, status="running")),
        ("update_run_failing", lambda: store.update_run(r, graph="x")),
        ("send_signal", lambda: store.send_signal(r, "pause")),
        ("clear_signals", lambda: store.clear_signals(r)),
        ("delete_run", lambda: store.delete_run(r)),
    ]


_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


def test_every_write_transaction_begins_immediate(store: Any, rec: Rec) -> None:
    """G6: a deferred BEGIN that reads first and writes later gets SQLITE_BUSY at once,
    whatever the busy timeout. Every statement that writes must run inside a transaction
    opened by ``BEGIN IMMEDIATE``, and each operation opens exactly one."""
    sqlite_only(store)
    log: list[str] = []
    store.conn.set_trace_callback(log.append)
    try:
        for name, op in _write_ops(store, rec):
            log.clear()
            try:
                op()
            except (ValueError, sqlite3.IntegrityError, StoreError):
                assert name.endswith("_failing"), f"{name} failed"
            txns = _transactions(log)
            assert len(txns) == 1, f"{name} ran {len(txns)} write transactions"
            assert (txns[0][-1] == "ROLLBACK") == name.endswith("_failing"), (name, txns[0])
            odd = [s for s in txns[0][1:-1] if not s.startswith((*_WRITE_VERBS, "SELECT"))]
            assert odd == [], f"{name}: unexpected statements {odd}"
            assert not store.conn.in_transaction, f"{name} left a transaction open"
    finally:
        store.conn.set_trace_callback(None)


def _transactions(stmts: list[str]) -> list[list[str]]:
    """Split a statement log into write transactions; fail on a write outside one."""
    txns: list[list[str]] = []
    current: list[str] | None = None
    for raw in stmts:
        s = " ".join(raw.split()).upper()
        if s.startswith("BEGIN"):
            assert current is None, f"nested {s!r}"
            assert s == "BEGIN IMMEDIATE", f"a write transaction opened with {s!r}"
            current = [s]
        elif s in ("COMMIT", "ROLLBACK", "END"):
            assert current is not None, f"{s} outside a transaction"
            txns.append([*current, s])
            current = None
        elif current is not None:
            current.append(s)
        else:
            assert not s.startswith(_WRITE_VERBS), f"write outside a transaction: {s[:80]}"
    assert current is None, "a transaction was left open"
    return txns


def test_the_engine_writes_only_inside_begin_immediate(store: Any) -> None:
    """A whole run through the engine (effects, an interrupt, resume with the answer):
    every statement that writes is inside a ``BEGIN IMMEDIATE`` transaction."""
    sqlite_only(store)
    app = golden_graph(store)
    log: list[str] = []
    store.conn.set_trace_callback(log.append)
    try:
        assert asyncio.run(app.run({"n": 1}, run_id="e1")).status == "paused"
        assert asyncio.run(app.resume("e1", value="yes")).status == "completed"
        app.get_state("e1")
        app.history("e1")
    finally:
        store.conn.set_trace_callback(None)
    txns = _transactions(log)
    assert len(txns) >= 10
    assert all(t[-1] == "COMMIT" for t in txns)
    assert not store.conn.in_transaction
    # G1: in this linear graph every activation closes its step, so the write row, the
    # next step row and the run-head advance must share one transaction
    activations = [t for t in txns if any(s.startswith('INSERT INTO "WRITES"') for s in t)]
    assert len(activations) == 4, activations
    for t in activations:
        assert any('INTO "STEPS"' in s for s in t), t
        assert any(s.startswith("UPDATE RUNS") for s in t), t


def test_reads_leave_no_transaction_open(store: Any, rec: Rec) -> None:
    """Short read transactions let the WAL checkpoint (no starvation, R4)."""
    sqlite_only(store)
    populate(store, rec, "r1")
    log: list[str] = []
    store.conn.set_trace_callback(log.append)
    try:
        for read in (
            lambda: store.get_run("r1"),
            lambda: store.list_runs(),
            lambda: store.steps("r1"),
            lambda: store.writes("r1"),
            lambda: store.effects("r1"),
            lambda: store.interrupts("r1"),
            lambda: store.latest_step("r1"),
            lambda: store.last_snapshot("r1", 5),
            lambda: store.signals("r1"),
            lambda: store.attempts("r1"),
            lambda: store.visit_counts("r1"),
            store.integrity_check,
        ):
            read()
            assert not store.conn.in_transaction
    finally:
        store.conn.set_trace_callback(None)
    assert not [s for s in log if s.upper().startswith(("BEGIN", *_WRITE_VERBS))]


def test_integrity_check_of_a_healthy_store_is_ok(store: Any, rec: Rec) -> None:
    populate(store, rec, "r1")
    assert store.integrity_check() == "ok"
