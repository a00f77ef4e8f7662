"""Bit flips in the indexes of a real SQLite file (issue 16 item 4).

A damaged index can make a read return another row set without any error from SQLite: the
"latest" step row can be an older one, a range read can skip rows. Every reader therefore
cross-checks what the run row promises (its head step, the activations each closed step
planned) against what it read. Each trial copies a database of completed linear runs,
flips one bit in a page of the ``steps`` or ``writes`` primary-key index (pages found
through ``dbstat``), and reads every run back through ``get_state``, ``history`` and
``resume``. The only outcomes allowed: the golden answer, or a ``StoreError``. A
``completed`` run is never executed again (its effect count does not move).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowstate import SQLiteStore
from flowstate.errors import StoreError

from ._graphs import chain_final, chain_graph

RUNS = 6
LENGTH = 8
INDEXES = ("sqlite_autoindex_steps_1", "sqlite_autoindex_writes_1")


def _golden(path: Path) -> None:
    store = SQLiteStore(path)
    app = chain_graph(store, LENGTH)
    for i in range(RUNS):
        r = asyncio.run(app.run({"seed": i + 1}, run_id=f"run-{i}"))
        assert r.status == "completed"
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def _index_pages(path: Path) -> list[int]:
    with sqlite3.connect(path) as c:
        rows = c.execute("SELECT pageno FROM dbstat WHERE name IN (?, ?)", INDEXES).fetchall()
    return sorted(r[0] for r in rows)


def _flip(path: Path, rnd: random.Random, pages: list[int]) -> None:
    with sqlite3.connect(path) as c:
        size = c.execute("PRAGMA page_size").fetchone()[0]
    page = rnd.choice(pages)
    with open(path, "r+b") as f:
        off = (page - 1) * size + rnd.randrange(8, size)
        f.seek(off)
        b = f.read(1)[0]
        f.seek(off)
        f.write(bytes([b ^ (1 << rnd.randrange(8))]))


def _trial(path: Path) -> dict[str, int]:
    """Counts of golden / typed-error / wrong outcomes over every read of every run."""
    out = {"golden": 0, "typed": 0, "wrong": 0}
    wrong: list[str] = []
    try:
        store = SQLiteStore(path)
    except StoreError:
        out["typed"] += 1
        return out
    try:
        app = chain_graph(store, LENGTH)
        for i in range(RUNS):
            rid, gold = f"run-{i}", chain_final(i + 1, LENGTH)
            checks: list[tuple[str, Any]] = [
                ("get_state", lambda rid=rid, gold=gold: app.get_state(rid) == gold),
                ("history", lambda rid=rid: len(app.history(rid)) == LENGTH),
            ]
            for name, check in checks:
                try:
                    ok = check()
                except StoreError:
                    out["typed"] += 1
                    continue
                out["golden" if ok else "wrong"] += 1
                if not ok:
                    wrong.append(f"{rid} {name}")
            try:
                before = len(store.effects(rid))
            except StoreError:
                before = None
            try:
                r = asyncio.run(app.resume(rid))
                ok = r.status == "completed" and r.state == gold
            except StoreError:
                out["typed"] += 1
            else:
                out["golden" if ok else "wrong"] += 1
                if not ok:
                    wrong.append(f"{rid} resume -> {r.status}")
            if before is not None:
                try:
                    after = len(store.effects(rid))
                    status = store.get_run(rid).status
                except StoreError:
                    continue
                if after != before or status != "completed":
                    out["wrong"] += 1
                    wrong.append(f"{rid} re-executed: effects {before}->{after}, {status}")
    finally:
        store.close()
    assert not wrong, wrong
    return out


def _run_trials(tmp_path: Path, n: int) -> dict[str, int]:
    base = tmp_path / "golden.db"
    _golden(base)
    pages = _index_pages(base)
    assert pages, "dbstat found no index pages"
    total = {"golden": 0, "typed": 0, "wrong": 0}
    for seed in range(n):
        path = tmp_path / "t.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copy(base, path)
        _flip(path, random.Random(seed), pages)
        for k, v in _trial(path).items():
            total[k] += v
    return total


def test_index_bit_flips_never_return_wrong_data(tmp_path: Path) -> None:
    total = _run_trials(tmp_path, 30)
    assert total["wrong"] == 0 and total["golden"] > 0, total


@pytest.mark.slow
def test_index_bit_flips_never_return_wrong_data_full(tmp_path: Path) -> None:
    total = _run_trials(tmp_path, 400)
    assert total["wrong"] == 0 and total["typed"] > 0, total


def _open_flipped(tmp_path: Path, n: int) -> dict[str, int]:
    base = tmp_path / "golden.db"
    _golden(base)
    data = base.read_bytes()
    with sqlite3.connect(base) as c:
        size = c.execute("PRAGMA page_size").fetchone()[0]
        pages = [p for (p,) in c.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'")]
    # the bytes of the schema's pages that hold something (the schema outgrows page 1 as
    # tables are added: a flip in a page's free space changes nothing SQLite reads)
    used = [
        i
        for p in pages
        for i in range((p - 1) * size + (100 if p == 1 else 0), p * size)
        if data[i]
    ]
    out: dict[str, int] = {}
    for seed in range(n):
        rnd = random.Random(seed)
        b = bytearray(data)
        b[rnd.choice(used)] ^= 1 << rnd.randrange(8)  # a schema page
        path = tmp_path / f"o{seed % 2}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(bytes(b))
        try:
            SQLiteStore(path).close()
            kind = "opened"
        except StoreError:
            kind = "StoreError"
        except Exception as e:
            kind = f"{type(e).__name__}: {e}"
        out[kind] = out.get(kind, 0) + 1
    return out


def test_opening_a_file_with_a_flipped_schema_bit_is_typed(tmp_path: Path) -> None:
    """A damaged schema page used to raise a bare ``UnicodeDecodeError`` (a garbled name
    quoted in SQLite's error message) or ``KeyError`` (from sqlite-utils)."""
    out = _open_flipped(tmp_path, 400)
    assert set(out) <= {"opened", "StoreError"}, out
    assert out.get("StoreError", 0) > 0
