"""The SQLite checkpoint schema: migrations registered on ``sqlite_utils.Migrations``.

Never edit or reorder a released migration; append a new one.
"""

from __future__ import annotations

import sqlite_utils

__all__ = ["migrations"]

migrations = sqlite_utils.Migrations("flowstate")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create(  # type: ignore[union-attr]
        {
            "id": str,
            "graph": str,
            "fingerprint": str,
            "graph_doc": str,
            "status": str,
            "input": str,
            "head_step": int,
            "error": str,
            "parent_id": str,
            "parent_step": int,
            "config": str,
            "created_at": float,
            "updated_at": float,
            "hash": str,
            "mhash": str,
        },
        pk="id",
        not_null={"graph", "fingerprint", "status", "input", "head_step", "hash"},
    )
    # no index on updated_at: it changes on every commit and would cost a page write each
    db["runs"].create_index(["created_at"])  # type: ignore[union-attr]
    db["runs"].create_index(["parent_id"])  # type: ignore[union-attr]
    db["steps"].create(  # type: ignore[union-attr]
        {
            "run_id": str,
            "step": int,
            "tasks": str,
            "joins": str,
            "snapshot": str,
            "created_at": float,
            "hash": str,
        },
        pk=("run_id", "step"),
        not_null={"tasks", "hash"},
    )
    db["writes"].create(  # type: ignore[union-attr]
        {
            "run_id": str,
            "step": int,
            "task_path": str,
            "node": str,
            "seq": int,
            "update": str,
            "goto": str,
            "usage": str,
            "started_at": float,
            "finished_at": float,
            "hash": str,
        },
        pk=("run_id", "step", "task_path"),
        not_null={"node", "seq", "update", "hash"},
    )
    db["effects"].create(  # type: ignore[union-attr]
        {
            "run_id": str,
            "step": int,
            "task_path": str,
            "seq": int,
            "name": str,
            "request": str,
            "response": str,
            "created_at": float,
            "hash": str,
        },
        pk=("run_id", "step", "task_path", "seq"),
        not_null={"name", "request", "response", "hash"},
    )
    db["interrupts"].create(  # type: ignore[union-attr]
        {
            "run_id": str,
            "step": int,
            "task_path": str,
            "seq": int,
            "payload": str,
            "answer": str,
            "created_at": float,
            "hash": str,
        },
        pk=("run_id", "step", "task_path", "seq"),
        not_null={"payload", "hash"},
    )
    db["attempts"].create(  # type: ignore[union-attr]
        {
            "run_id": str,
            "step": int,
            "task_path": str,
            "attempt": int,
            "error": str,
            "created_at": float,
        },
        pk=("run_id", "step", "task_path", "attempt"),
    )
    db["signals"].create(  # type: ignore[union-attr]
        {"run_id": str, "kind": str, "created_at": float},
        pk=("run_id", "kind"),
    )


@migrations()
def m002_leases(db: sqlite_utils.Database) -> None:
    """One writer per run: the owner, its fencing epoch and its lease expiry."""
    db["runs"].add_column("owner", str)  # type: ignore[union-attr]
    db["runs"].add_column("epoch", int, not_null_default=0)  # type: ignore[union-attr]
    db["runs"].add_column("lease_until", float)  # type: ignore[union-attr]


@migrations()
def m003_blobs(db: sqlite_utils.Database) -> None:
    """Large effect results stored once by content hash (forks and retries repeat them)."""
    db["blobs"].create({"hash": str, "data": str}, pk="hash")  # type: ignore[union-attr]


@migrations()
def m004_meta(db: sqlite_utils.Database) -> None:
    """A metadata row naming this database: a random id, checked by every write of a
    store object against the id it read at open (a replaced or re-created file is
    refused, never written as if it were the same database)."""
    import uuid

    db["meta"].create({"key": str, "value": str}, pk="key")  # type: ignore[union-attr]
    db["meta"].insert({"key": "database_id", "value": uuid.uuid4().hex})  # type: ignore[union-attr]


@migrations()
def m301_threads(db: sqlite_utils.Database) -> None:
    """Threads: a run may be a turn of a thread (a conversation over one evolving state).
    Nullable columns, hashed only when set, so rows stored before keep their hashes; the
    unique index lets exactly one caller take each turn."""
    db["runs"].add_column("thread_id", str)  # type: ignore[union-attr]
    db["runs"].add_column("turn", int)  # type: ignore[union-attr]
    db.execute('CREATE UNIQUE INDEX "runs_thread_turn" ON "runs" ("thread_id", "turn")')


@migrations()
def m401_events(db: sqlite_utils.Database) -> None:
    """The live view of runs: the engine's events as JSON, so another process can follow a
    run (no hash: events are not the durable record)."""
    db["events"].create(  # type: ignore[union-attr]
        {"run_id": str, "seq": int, "kind": str, "data": str, "created_at": float},
        pk=("run_id", "seq"),
    )


@migrations()
def m601_timers_schedules(db: sqlite_utils.Database) -> None:
    """Durable timers and schedules: the wake-up time of a paused run (outside the row
    hashes, see ``_common.WAKE_AT``), the schedules, and one row per schedule firing (its
    primary key makes each firing start at most one run, whoever fires it)."""
    db["runs"].add_column("wake_at", float)  # type: ignore[union-attr]
    db.execute('CREATE INDEX "idx_runs_wake_at" ON "runs" ("wake_at") WHERE "wake_at" IS NOT NULL')
    db["schedules"].create(  # type: ignore[union-attr]
        {
            "name": str,
            "graph": str,
            "cron": str,
            "tz": str,
            "input": str,
            "catchup": str,
            "paused": int,
            "next_fire": float,
            "created_at": float,
            "updated_at": float,
        },
        pk="name",
        not_null={"graph", "cron", "tz", "input", "catchup", "paused", "next_fire"},
    )
    db["firings"].create(  # type: ignore[union-attr]
        {"schedule": str, "fire_time": float, "run_id": str, "created_at": float},
        pk=("schedule", "fire_time"),
        not_null={"run_id"},
    )


@migrations()
def m701_queue(db: sqlite_utils.Database) -> None:
    """The fleet on one machine (``_sqlite_queue``): runs waiting for a worker process, the
    workers, and flow-control rows; the same tables as PostgreSQL's ``m501_queue``. New
    tables only: nothing existing changes."""
    db.execute(
        """CREATE TABLE "queue" (
            "run_id" TEXT PRIMARY KEY,
            "queue" TEXT NOT NULL,
            "graph" TEXT NOT NULL,
            "priority" INTEGER NOT NULL DEFAULT 0,
            "available_at" REAL NOT NULL,
            "attempts" INTEGER NOT NULL DEFAULT 0,
            "max_attempts" INTEGER NOT NULL,
            "worker" TEXT,
            "claimed_until" REAL,
            "reasons" TEXT NOT NULL DEFAULT '[]',
            "created_at" REAL NOT NULL
        )"""
    )
    db.execute('CREATE INDEX "queue_pick" ON "queue" ("queue", "priority" DESC, "available_at")')
    db.execute('CREATE INDEX "queue_worker" ON "queue" ("worker")')
    db.execute(
        """CREATE TABLE "workers" (
            "id" TEXT PRIMARY KEY,
            "host" TEXT NOT NULL,
            "pid" INTEGER NOT NULL,
            "queues" TEXT NOT NULL,
            "graphs" TEXT NOT NULL,
            "concurrency" INTEGER NOT NULL,
            "state" TEXT NOT NULL,
            "started_at" REAL NOT NULL,
            "heartbeat_at" REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE "flow_limits" (
            "key" TEXT PRIMARY KEY,
            "max_running" INTEGER,
            "per_second" REAL,
            "burst" REAL,
            "tokens" REAL,
            "updated_at" REAL
        )"""
    )


@migrations()
def m702_event_batches(db: sqlite_utils.Database) -> None:
    """Events in batches (``_sqlite_events``): a row holds the events ``seq`` to ``last``
    of one append, compressed. Existing rows are single events: ``last`` = ``seq``. An
    older flowstate still running on the file (a rolling deploy) keeps writing single
    events, which this one reads; an older process following a run does not understand a
    batch row, so upgrade the processes that follow runs (service, inspector) first."""
    for table in ("events", "quarantine_events"):
        if db[table].exists():
            db.execute(f'ALTER TABLE "{table}" ADD COLUMN "last" INTEGER')
            db.execute(f'UPDATE "{table}" SET "last" = "seq"')
