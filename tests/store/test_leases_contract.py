"""The one-writer-per-run contract (leases and fencing), for every backend.

Each test is a function of the ``store`` / ``store_factory`` fixtures of ``conftest.py``,
which run it against ``SQLiteStore`` and ``PostgresStore`` unchanged. Two store objects
opened with the same name share one database (file or schema) and stand for two processes.

What is pinned: ``create_run(owner=...)`` takes the lease at epoch 1; ``acquire`` refuses a
live unexpired holder with ``RunOwned`` naming it, lets ``alive() -> False`` or an expired
lease be taken over at epoch + 1, and lets exactly one of many concurrent callers win;
``heartbeat`` by a stale epoch returns False; ``commit`` / ``record_effect`` /
``record_interrupt`` / ``update_run`` by a stale epoch raise ``LeaseLost`` and write
nothing; ``release`` only frees the lease of its current holder; and a takeover waits for a
fenced write in progress instead of slipping in between its check and its commit.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from flowstate.errors import LeaseLost, RunNotFound, RunOwned

from .conftest import Rec, StoreFactory
from .test_contract import dump

TTL = 30.0


def _owned_run(store: Any, rec: Rec, run_id: str = "r", owner: str = "a", ttl: float = TTL) -> None:
    store.create_run(rec.run(run_id), rec.step(run_id, 0, snapshot='{"n":0}'), owner=owner, ttl=ttl)


def _two(store_factory: StoreFactory) -> tuple[Any, Any]:
    """Two store objects on the same database: two processes."""
    return store_factory("shared"), store_factory("shared")


# -- creation and lookup ----------------------------------------------------------------------


def test_create_run_with_an_owner_takes_the_lease_at_epoch_1(store: Any, rec: Rec) -> None:
    before = time.time()
    _owned_run(store, rec, owner="a", ttl=TTL)
    owner, epoch, until = store.lease("r")
    assert (owner, epoch) == ("a", 1)
    assert until is not None and before + TTL <= until <= time.time() + TTL
    assert store.fences == {"r": ("a", 1)}


def test_create_run_without_an_owner_leaves_the_run_unleased(store: Any, rec: Rec) -> None:
    store.create_run(rec.run("r"), rec.step("r", 0))
    assert store.lease("r") == (None, 0, None)
    assert store.fences == {}
    assert store.acquire("r", "a", TTL) == 1  # nobody to refuse it


def test_lease_and_acquire_of_an_unknown_run_raise_run_not_found(store: Any) -> None:
    with pytest.raises(RunNotFound):
        store.lease("nope")
    with pytest.raises(RunNotFound):
        store.acquire("nope", "a", TTL)
    assert store.fences == {}


# -- acquire --------------------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", [None, True, "no alive callback"])
def test_acquire_refuses_a_live_unexpired_owner_naming_it(
    store_factory: StoreFactory, rec: Rec, verdict: Any
) -> None:
    a, b = _two(store_factory)
    _owned_run(a, rec, owner="host:1:aaaa")
    asked: list[str] = []

    def alive(owner: str) -> bool | None:
        asked.append(owner)
        return verdict  # type: ignore[no-any-return]

    with pytest.raises(RunOwned, match=r"run r is being executed by host:1:aaaa") as e:
        b.acquire("r", "host:2:bbbb", TTL, alive=None if verdict == "no alive callback" else alive)
    assert (e.value.run_id, e.value.owner) == ("r", "host:1:aaaa")
    assert e.value.lease_until == a.lease("r")[2]
    assert asked == ([] if verdict == "no alive callback" else ["host:1:aaaa"])
    assert b.lease("r")[:2] == ("host:1:aaaa", 1)  # unchanged
    assert b.fences == {} and a.fences == {"r": ("host:1:aaaa", 1)}


def test_alive_false_lets_a_takeover_happen_before_expiry(
    store_factory: StoreFactory, rec: Rec
) -> None:
    a, b = _two(store_factory)
    _owned_run(a, rec, owner="a")
    asked: list[str] = []
    epoch = b.acquire("r", "b", TTL, alive=lambda o: asked.append(o) or False)
    assert epoch == 2 and asked == ["a"]
    assert b.lease("r")[:2] == ("b", 2) and b.fences == {"r": ("b", 2)}


def test_an_expired_lease_is_taken_over_at_epoch_plus_1_without_asking(
    store_factory: StoreFactory, rec: Rec
) -> None:
    a, b = _two(store_factory)
    _owned_run(a, rec, owner="a", ttl=0.05)
    time.sleep(0.1)
    asked: list[str] = []
    assert b.acquire("r", "b", TTL, alive=lambda o: asked.append(o) or True) == 2
    assert asked == []  # an expired lease is free whatever the holder's liveness
    owner, epoch, until = b.lease("r")
    assert (owner, epoch) == ("b", 2) and until is not None and until > time.time() + TTL - 5
    # and again: every takeover bumps the epoch
    assert a.acquire("r", "a2", TTL, alive=lambda o: False) == 3
    assert a.fences == {"r": ("a2", 3)}


def test_the_holder_itself_may_reacquire_and_gets_a_new_epoch(store: Any, rec: Rec) -> None:
    _owned_run(store, rec, owner="a")
    assert store.acquire("r", "a", TTL) == 2
    assert store.lease("r")[:2] == ("a", 2) and store.fences == {"r": ("a", 2)}


def test_of_many_concurrent_acquirers_exactly_one_wins(
    store_factory: StoreFactory, rec: Rec
) -> None:
    n = 6
    stores = [store_factory("shared") for _ in range(n)]
    stores[0].create_run(rec.run("r"), rec.step("r", 0))
    barrier = threading.Barrier(n)
    won: list[tuple[str, int]] = []
    refused: list[str] = []
    other: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            won.append((f"o{i}", stores[i].acquire("r", f"o{i}", TTL)))
        except RunOwned as e:
            refused.append(e.owner)
        except BaseException as e:  # pragma: no cover - reported below
            other.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert other == []
    assert len(won) == 1 and won[0][1] == 1, won
    assert refused == [won[0][0]] * (n - 1)
    assert stores[0].lease("r")[:2] == won[0]


# -- heartbeat ----------------------------------------------------------------------------------


def test_heartbeat_extends_the_current_lease_and_fails_for_a_stale_epoch(
    store_factory: StoreFactory, rec: Rec
) -> None:
    a, b = _two(store_factory)
    _owned_run(a, rec, owner="a", ttl=5.0)
    first = a.lease("r")[2]
    assert a.heartbeat("r", "a", 1, TTL) is True
    assert a.lease("r")[2] > first + 20
    assert b.acquire("r", "b", TTL, alive=lambda o: False) == 2
    until = b.lease("r")[2]
    assert a.heartbeat("r", "a", 1, TTL) is False  # taken over: the caller must stop
    assert a.heartbeat("r", "b", 1, TTL) is False  # owner and epoch must both match
    assert a.heartbeat("r", "a", 2, TTL) is False
    assert b.lease("r") == ("b", 2, until)  # a stale heartbeat changes nothing
    assert b.heartbeat("r", "b", 2, TTL) is True
    assert a.heartbeat("nope", "a", 1, TTL) is False


# -- fencing -------------------------------------------------------------------------------------


def _taken_over(store_factory: StoreFactory, rec: Rec) -> tuple[Any, Any]:
    """``a`` created run r (epoch 1) and committed step 0; ``b`` took it over (epoch 2)."""
    a, b = _two(store_factory)
    _owned_run(a, rec, owner="a")
    a.commit(
        "r",
        writes=[rec.write("r", 0, "t")],
        step=rec.step("r", 1),
        run_fields={"status": "running", "head_step": 1, "error": None},
    )
    assert b.acquire("r", "b", TTL, alive=lambda o: False) == 2
    return a, b


_STALE_WRITES = {
    "commit": lambda s, rec: s.commit(
        "r",
        writes=[rec.write("r", 1, "t")],
        effects=[rec.effect("r", 1, "t")],
        step=rec.step("r", 2),
        run_fields={"status": "running", "head_step": 2, "error": None},
    ),
    # the engine's shape (PostgresStore: one statement, commit_fn)
    "commit_activation": lambda s, rec: s.commit(
        "r",
        writes=[rec.write("r", 1, "t")],
        step=rec.step("r", 2),
        run_fields={"status": "running", "head_step": 2, "error": None},
    ),
    "commit_step_only": lambda s, rec: s.commit("r", step=rec.step("r", 2)),
    "commit_some_fields": lambda s, rec: s.commit("r", run_fields={"status": "failed"}),
    "record_effect": lambda s, rec: s.record_effect(rec.effect("r", 1, "t")),
    "record_interrupt": lambda s, rec: s.record_interrupt(
        rec.interrupt("r", 1, "t"), {"status": "paused", "error": "interrupt", "head_step": 1}
    ),
    "update_run": lambda s, rec: s.update_run("r", status="cancelled", error="cancelled"),
    # issue 16 item 6: a former owner's retry bookkeeping is not stored either
    "record_attempt": lambda s, rec: s.record_attempt(rec.attempt("r", 1, "t")),
}


@pytest.mark.parametrize("op", sorted(_STALE_WRITES))
def test_a_write_by_a_stale_epoch_raises_lease_lost_and_writes_nothing(
    store_factory: StoreFactory, rec: Rec, op: str
) -> None:
    a, b = _taken_over(store_factory, rec)
    before = dump(b, "r")
    lease = b.lease("r")
    with pytest.raises(LeaseLost, match=r"epoch 1 was taken over: now held by b at epoch 2") as e:
        _STALE_WRITES[op](a, rec)
    assert (e.value.run_id, e.value.epoch) == ("r", 1)
    assert "nothing of it was stored" in str(e.value)
    assert dump(b, "r") == before and b.lease("r") == lease
    # the current owner's same write goes through
    _STALE_WRITES[op](b, rec)
    assert dump(b, "r") != before


def test_a_fenced_write_to_a_deleted_run_raises_lease_lost(store: Any, rec: Rec) -> None:
    _owned_run(store, rec, owner="a")
    store.delete_run("r")
    with pytest.raises(LeaseLost, match="run deleted"):
        store.commit("r", step=rec.step("r", 1))
    assert store.find_run("r") is None and store.steps("r") == []


def test_a_takeover_waits_for_a_fenced_write_in_progress(
    store_factory: StoreFactory, rec: Rec
) -> None:
    """The fence check and the writes it guards are one transaction: a takeover cannot
    land between them, it waits until they are committed."""
    a, b = _two(store_factory)
    _owned_run(a, rec, owner="a")
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(b.acquire("r", "b", TTL, alive=lambda o: False)))
    with a.write() as c:
        a._fence(c, "r")  # passes: a holds epoch 1
        t.start()
        time.sleep(0.4)
        assert got == [] and t.is_alive()  # blocked behind a's transaction
    t.join(timeout=30)
    assert got == [2]
    with pytest.raises(LeaseLost):
        a.commit("r", step=rec.step("r", 1))


# -- release ------------------------------------------------------------------------------------


def test_release_only_frees_the_lease_of_its_current_holder(
    store_factory: StoreFactory, rec: Rec
) -> None:
    a, b = _taken_over(store_factory, rec)
    lease = b.lease("r")
    a.release("r", "a", 1)  # stale: a no-op on the row
    assert b.lease("r") == lease and a.fences == {}
    b.release("r", "a", 2)  # wrong owner
    b.release("r", "b", 1)  # wrong epoch
    assert b.lease("r") == lease
    b.release("r", "b", 2)
    assert b.lease("r") == (None, 2, None)  # the epoch is kept: the next holder gets 3
    assert b.fences == {}
    assert a.acquire("r", "c", TTL) == 3  # free: no alive() needed


def test_release_drops_the_fence_of_its_store_object(store: Any, rec: Rec) -> None:
    _owned_run(store, rec, owner="a")
    store.release("r", "a", 1)
    assert store.fences == {}
    # no fence any more: this store object's writes are not checked against the lease
    store.commit("r", step=rec.step("r", 1))
    assert [s.step for s in store.steps("r")] == [0, 1]
