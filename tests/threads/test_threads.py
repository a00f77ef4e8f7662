"""Threads in one process: turns over one evolving state, input checks, the three
strategies against a turn running in this process, paused and failed turns, fork, listing,
history and replay across turns."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowstate import InputRejected, ThreadBusy
from flowstate.errors import ConfigError, RunStateError, ThreadNotFound, TurnNotReady

from .chatgraph import LOOPS, Chat, make, user


def test_a_turn_starts_from_the_last_turns_final_state_through_the_reducers(
    tmp_path: Path,
) -> None:
    app = make(tmp_path / "t.db")
    r1 = app.run_sync(user("hello"), thread_id="t")
    r2 = app.run_sync(user("again"), thread_id="t")
    assert r2.state.messages == [
        "user: hello",
        "bot: hello (1 before)",
        "user: again",
        "bot: again (3 before)",  # the second turn saw the first one's messages
    ]
    assert r2.state.total == 2 * LOOPS  # add reducer: the thread's count goes on
    assert r2.state.ticks == LOOPS  # replaced by each turn's input, then counted again
    t = app.thread("t")
    assert [(x.turn, x.run_id, x.status) for x in t.turns] == [
        (1, r1.run_id, "completed"),
        (2, r2.run_id, "completed"),
    ]
    assert t.turns[1].input == user("again")  # what was sent for the turn, not the state
    assert t.forked_from is None
    # state_at(turn, 0) is the state the turn started from
    assert app.state_at(r2.run_id, 0).messages == [*r1.state.messages, "user: again"]
    history = app.thread_history("t")
    assert [e.run_id for e in history] == [r1.run_id] * (LOOPS + 1) + [r2.run_id] * (LOOPS + 1)
    [summary] = app.threads()
    assert (summary.thread_id, summary.turns, summary.last_run_id) == ("t", 2, r2.run_id)
    # each turn replays offline
    for rid in (r1.run_id, r2.run_id):
        assert asyncio.run(app.replay(rid)).identical


def test_the_input_of_a_turn_is_checked_and_nothing_is_stored_when_it_is_wrong(
    tmp_path: Path,
) -> None:
    app = make(tmp_path / "t.db")
    app.run_sync(user("hello"), thread_id="t")
    with pytest.raises(InputRejected, match=r"'mesages'.*Chat does not have"):
        app.run_sync({"mesages": ["x"]}, thread_id="t")
    with pytest.raises(InputRejected, match="ticks"):
        app.run_sync({"ticks": "many"}, thread_id="t")
    with pytest.raises(ConfigError, match="reject, enqueue, interrupt"):
        app.run_sync(user("x"), thread_id="t", multitask_strategy="later")
    assert len(app.thread("t").turns) == 1
    with pytest.raises(ThreadNotFound, match=r"FS228.*'nope'"):
        app.thread("nope")


async def _live(app: Any, thread: str, turn: int) -> str:
    """Wait until turn ``turn`` of ``thread`` has committed a first activation."""
    for _ in range(2000):
        runs = app.store.thread_runs(thread)
        if len(runs) >= turn and app.store.writes(runs[turn - 1].id):
            return runs[turn - 1].id
        await asyncio.sleep(0.01)
    raise AssertionError(f"turn {turn} of {thread} never started")


def test_reject_enqueue_and_interrupt_against_a_turn_running_in_this_process(
    tmp_path: Path,
) -> None:
    app = make(tmp_path / "t.db", delay=0.05)

    async def go() -> None:
        app.run_sync  # noqa: B018 - the async API below
        first = asyncio.create_task(app.run(user("one"), thread_id="t"))
        running = await _live(app, "t", 1)
        with pytest.raises(ThreadBusy) as e:
            await app.run(user("two"), thread_id="t")
        assert e.value.run_id == running and e.value.code == "FS225"
        assert "enqueue" in str(e.value) and "interrupt" in str(e.value)
        # enqueue: stored as turn 2 at once, executed after turn 1, by this call
        second = asyncio.create_task(
            app.run(user("two"), thread_id="t", multitask_strategy="enqueue")
        )
        for _ in range(500):
            if len(app.store.thread_runs("t")) == 2:
                break
            await asyncio.sleep(0.01)
        queued = app.store.thread_runs("t")[1]
        assert (queued.status, queued.turn) == ("queued", 2)
        with pytest.raises(ThreadBusy, match="queued"):  # the last turn is the queued one
            await app.run(user("x"), thread_id="t")
        with pytest.raises(TurnNotReady, match=f"behind turn 1 \\(run {running}\\)"):
            await app.resume(queued.id)
        r1, r2 = await first, await second
        assert (r1.status, r2.status) == ("completed", "completed")
        assert r2.state.messages[-2:] == ["user: two", "bot: two (3 before)"]
        # interrupt: turn 3 runs; turn 4 cancels it at its next boundary and starts from
        # what it had committed
        third = asyncio.create_task(app.run(user("three"), thread_id="t"))
        victim = await _live(app, "t", 3)
        r4 = await app.run(user("four"), thread_id="t", multitask_strategy="interrupt")
        r3 = await third
        assert r3.status == "cancelled" and app.get_run(victim).status == "cancelled"
        assert r4.status == "completed"
        kept = app.get_state(victim)
        assert kept.ticks < LOOPS  # it was cut short
        assert r4.state.messages == [*kept.messages, "user: four", "bot: four (6 before)"]
        assert r4.state.total == kept.total + LOOPS

    asyncio.run(go())


def test_a_paused_last_turn_rejects_new_input_until_resumed_or_interrupted(
    tmp_path: Path,
) -> None:
    app = make(tmp_path / "t.db")
    r1 = app.run_sync(user("one"), thread_id="t", interrupt_before=["reply"])
    assert r1.status == "paused"
    with pytest.raises(ThreadBusy, match=f"run {r1.run_id}\\) paused.*flowstate resume"):
        app.run_sync(user("two"), thread_id="t")
    # enqueue behind a paused turn: stored, waits for it (status queued), starts after it
    r2 = app.run_sync(user("two"), thread_id="t", multitask_strategy="enqueue")
    assert r2.status == "queued" and "waits for turn 1" in (r2.reason or "")
    assert app.resume_sync(r1.run_id).status == "completed"
    done = app.resume_sync(r2.run_id)
    assert done.status == "completed"
    assert done.state.messages == [
        "user: one",
        "bot: one (1 before)",
        "user: two",
        "bot: two (3 before)",
    ]
    # interrupt a paused turn: it is cancelled and the new turn starts from its state
    r3 = app.run_sync(user("three"), thread_id="t", interrupt_before=["reply"])
    r4 = app.run_sync(user("four"), thread_id="t", multitask_strategy="interrupt")
    assert app.get_run(r3.run_id).status == "cancelled"
    assert r4.state.messages[-3:] == ["user: three", "user: four", "bot: four (6 before)"]


def test_a_fork_of_a_turn_starts_a_new_thread_linked_to_its_origin(tmp_path: Path) -> None:
    app = make(tmp_path / "t.db")
    app.run_sync(user("one"), thread_id="t")
    r2 = app.run_sync(user("two"), thread_id="t")
    f = asyncio.run(app.fork(r2.run_id, at=0, update={"messages": ["user: other"]}))
    new = app.get_run(f.run_id)
    assert new.thread_id == f.run_id and new.turn == 1
    forked = app.thread(f.run_id)
    assert forked.forked_from == (r2.run_id, 0)
    assert f.state.messages[-2:] == ["user: other", "bot: other (4 before)"]
    # the fork's thread goes on by itself; the origin is untouched
    r = app.run_sync(user("three"), thread_id=f.run_id)
    assert r.state.messages[-1] == "bot: three (6 before)"
    assert len(app.thread("t").turns) == 2
    assert isinstance(app.get_state(app.thread("t").last.run_id), Chat)


def test_a_run_id_already_used_cannot_be_a_new_turn(tmp_path: Path) -> None:
    app = make(tmp_path / "t.db")
    r = app.run_sync(user("one"), thread_id="t")
    with pytest.raises(RunStateError, match=f"'{r.run_id}' already exists"):
        app.run_sync(user("two"), thread_id="t", run_id=r.run_id)
    assert len(app.thread("t").turns) == 1
