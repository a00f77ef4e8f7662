"""A writer process for test_many_writers.py: runs its share of linear-20 runs on one file.

    python tests/store/_writer.py DB GO_FILE RUN_ID:SEED [RUN_ID:SEED ...] [--deferred]

It opens its own store (after the process started, never inherited), prints ``ready``,
waits until GO_FILE exists so that every writer starts at the same moment, then runs all
its runs concurrently on one event loop and prints one JSON line: the runs it completed,
every error it saw (type and message), and how many of them said "database is locked".

``--deferred`` is the negative control of RELIABILITY.md R4: a store variant whose write
transactions start with a plain (deferred) ``BEGIN`` and read before they write, the
pattern that makes SQLite return SQLITE_BUSY at once whatever the busy timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _graphs import chain_graph

from flowstate import SQLiteStore


class DeferredBeginStore(SQLiteStore):
    """Negative control only: deferred BEGIN, then a read, then the writes."""

    locked = 0

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN")
            try:
                self.conn.execute("SELECT count(*) FROM runs").fetchone()
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as e:
                if "database is locked" in str(e):
                    DeferredBeginStore.locked += 1
                with contextlib.suppress(sqlite3.DatabaseError):
                    self.conn.execute("ROLLBACK")
                raise


def main(argv: list[str]) -> int:
    deferred = "--deferred" in argv
    args = [a for a in argv if a != "--deferred"]
    db, go = args[0], Path(args[1])
    jobs = [(rid, int(seed)) for rid, seed in (a.rsplit(":", 1) for a in args[2:])]
    store = DeferredBeginStore(db) if deferred else SQLiteStore(db)
    app = chain_graph(store)
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            print(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "completed": [],
                        "locked": 0,
                        "errors": [{"run": "*", "error": "no go signal", "locked": False}],
                    }
                )
            )
            return 2
        time.sleep(0.005)

    errors: list[dict[str, Any]] = []
    completed: list[str] = []

    async def one(rid: str, seed: int) -> None:
        try:
            result = await app.run({"seed": seed}, run_id=rid)
            if result.status == "completed":
                completed.append(rid)
            else:
                errors.append(
                    {
                        "run": rid,
                        "error": f"finished {result.status}: {result.reason}",
                        "locked": "database is locked" in str(result.reason),
                    }
                )
        except Exception as e:
            text = "".join(traceback.format_exception(e))
            errors.append(
                {
                    "run": rid,
                    "error": f"{type(e).__name__}: {e}",
                    "locked": "database is locked" in text,
                }
            )

    async def all_runs() -> None:
        await asyncio.gather(*(one(rid, seed) for rid, seed in jobs))

    started = time.monotonic()
    asyncio.run(all_runs())
    store.close()
    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "completed": completed,
                "errors": errors,
                "locked": sum(e["locked"] for e in errors) + DeferredBeginStore.locked,
                "commits": store.commits,
                "seconds": round(time.monotonic() - started, 3),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
