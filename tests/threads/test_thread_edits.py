"""An ``update_state`` between two turns of a thread (issue 19): the next turn starts from
the edited state, and both turns replay identically offline, the edit included."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .chatgraph import LOOPS, make, user


def test_an_edit_between_two_turns_is_seen_by_the_next_turn_and_replayed(
    tmp_path: Path,
) -> None:
    app = make(tmp_path / "t.db")
    r1 = app.run_sync(user("hello"), thread_id="t")
    # correct the finished turn in place: the reducer appends, the run stays completed
    app.update_state(r1.run_id, {"messages": ["system: be brief"]}, by="reviewer")
    assert app.get_run(r1.run_id).status == "completed"
    edited = app.get_state(r1.run_id)
    assert edited.messages == [*r1.state.messages, "system: be brief"]
    assert any(e.edit and e.by == "reviewer" for e in app.history(r1.run_id))

    r2 = app.run_sync(user("again"), thread_id="t")
    # turn 2 began from the edited final state, with its input applied through reducers
    assert app.state_at(r2.run_id, 0).messages == [*edited.messages, "user: again"]
    assert r2.state.messages[-1] == f"bot: again ({len(edited.messages) + 1} before)"
    assert r2.state.total == 2 * LOOPS
    for rid in (r1.run_id, r2.run_id):
        report = asyncio.run(app.replay(rid))
        assert report.identical, report
