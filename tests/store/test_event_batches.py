"""SQLite keeps a run's events as one compressed row per appended batch (``_sqlite_events``):
what ``events_since`` returns is what the in-memory store (a row per event) returns, for
any batches, any ``after`` and ``limit``; old single-event rows (before m702) stay
readable beside batches; batches are sealed on an encrypted store; trimming drops whole
batches and keeps at least the newest ``MAX_EVENTS_PER_RUN``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowstate.checkpoints import InMemoryStore, Keyring, SQLiteStore, _sqlite_events
from flowstate.checkpoints._sql_events import pack_event
from flowstate.checkpoints._sqlite_schema import migrations
from flowstate.errors import EncryptionRequired

RUN = "run-1"
KINDS = ("node_started", "step_finished", "token", "custom")


def event(seq: int, kind: str, extra: str, raw: bool) -> tuple[int, str, str, float]:
    at = 1_700_000_000.0 + seq / 7
    if raw:  # not the engine's JSON (a child run's event, or any text): kept as it is
        return (seq, kind, f"raw\n\t{extra}", at)
    data = json.dumps(
        {"run_id": RUN, "at": at, "kind": kind, "step": seq, "extra": extra},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return (seq, kind, data, at)


@st.composite
def batches(draw: Any) -> list[list[tuple[int, str, str, float]]]:
    sizes = draw(st.lists(st.integers(1, 30), min_size=1, max_size=8))
    out, seq = [], 0
    for size in sizes:
        batch = []
        for _ in range(size):
            seq += 1
            batch.append(
                event(
                    seq,
                    draw(st.sampled_from(KINDS)),
                    draw(st.text(max_size=12)),
                    draw(st.booleans()),
                )
            )
        out.append(batch)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    appended=batches(),
    reappend=st.integers(0, 3),
    skip=st.integers(0, 5),
    after=st.integers(0, 300),
    limit=st.integers(1, 300),
)
def test_events_since_equals_a_row_per_event(
    tmp_path_factory: pytest.TempPathFactory,
    appended: list[list[tuple[int, str, str, float]]],
    reappend: int,
    skip: int,
    after: int,
    limit: int,
) -> None:
    sqlite = SQLiteStore(tmp_path_factory.mktemp("ev") / "e.db")
    memory = InMemoryStore()
    try:
        for store in (sqlite, memory):
            for batch in appended:
                store.append_events(RUN, batch)
            for batch in appended[:reappend]:  # a flush retried, whole or in part
                store.append_events(RUN, batch[skip % len(batch) :])
        total = sum(len(b) for b in appended)
        assert sqlite.last_event_seq(RUN) == memory.last_event_seq(RUN) == total
        assert sqlite.events_since(RUN, after, limit) == memory.events_since(RUN, after, limit)
        assert sqlite.events_since(RUN) == memory.events_since(RUN)
        assert sqlite.events_since("another-run") == []
    finally:
        sqlite.close()


def test_a_batch_is_one_compressed_row(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "e.db")
    events = [event(s, "node_started", "x" * 50, False) for s in range(1, 201)]
    store.append_events(RUN, events)
    rows = store.db.execute('SELECT "seq", "last", "kind", length("data") FROM events').fetchall()
    text = sum(len(e[2]) for e in events)
    assert len(rows) == 1 and rows[0][:3] == (1, 200, "")
    assert rows[0][3] < text / 5, (rows[0][3], text)
    store.close()


def test_rows_from_before_m702_are_read_beside_batches(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m702_event_batches")
    old = [event(s, "node_started", f"old{s}", False) for s in range(1, 6)]
    db.conn.executemany(
        'INSERT INTO events ("run_id", "seq", "kind", "data", "created_at") VALUES (?,?,?,?,?)',
        [(RUN, s, k, pack_event(RUN, k, d, at), at) for s, k, d, at in old],
    )
    db.conn.commit()
    db.close()
    store = SQLiteStore(path)  # migrates: the old rows get last = seq
    assert store.last_event_seq(RUN) == 5
    new = [event(s, "token", f"new{s}", False) for s in range(6, 12)]
    store.append_events(RUN, new)
    assert store.events_since(RUN) == old + new
    assert store.events_since(RUN, 3, 4) == (old + new)[3:7]
    # a process of the previous version writes single events beside the batches
    late = event(12, "custom", "late", False)
    store.db.execute(
        'INSERT INTO events ("run_id", "seq", "kind", "data", "created_at") VALUES (?,?,?,?,?)',
        [RUN, 12, late[1], pack_event(RUN, late[1], late[2], late[3]), late[3]],
    )
    assert store.events_since(RUN, 10) == [new[-1], late]
    assert store.last_event_seq(RUN) == 12
    store.close()


def test_batches_are_sealed_on_an_encrypted_store(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    ring = Keyring({"k1": Keyring.generate_key()})
    store = SQLiteStore(path, encryption=ring)
    events = [event(s, "custom", "secret-value", False) for s in range(1, 31)]
    store.append_events(RUN, events)
    assert store.events_since(RUN, 10, 5) == events[10:15]
    store.close()
    with sqlite3.connect(path) as c:
        (data,) = c.execute("SELECT data FROM events").fetchone()
    assert isinstance(data, str) and "secret" not in data
    keyless = SQLiteStore(path)
    with pytest.raises(EncryptionRequired):
        keyless.events_since(RUN)
    keyless.close()


def test_trimming_drops_whole_batches_and_keeps_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_events, "MAX_EVENTS_PER_RUN", 25)
    store = SQLiteStore(tmp_path / "e.db")
    seq = 0
    for size in (10, 10, 10, 10, 7):
        store.append_events(RUN, [event(seq + i, "token", "t", False) for i in range(1, size + 1)])
        seq += size
    # the batches ending at or before 47 - 25 = 22 are gone; 21-30 holds event 23: kept
    assert [e[0] for e in store.events_since(RUN)] == list(range(21, 48))
    store.close()
