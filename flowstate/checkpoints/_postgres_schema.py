"""The PostgreSQL checkpoint schema: versioned migrations recorded in
``<schema>.migrations``.

Each migration is a name and its statements; ``{runs}`` etc. are the schema-qualified
table names. Never edit or reorder a released migration; append a new one.
"""

from __future__ import annotations

import hashlib
import re

from flowstate.errors import ConfigError

__all__ = [
    "FLEET_CHANNEL",
    "FLEET_TABLES",
    "MIGRATIONS",
    "SCHEMA_NAME",
    "TABLES",
    "channel_name",
    "fleet_channel",
]

SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""Schema names the store accepts: a plain SQL identifier of at most 63 bytes."""

TABLES = ("runs", "steps", "writes", "effects", "interrupts", "attempts", "signals")

COMMIT_FN = """CREATE OR REPLACE FUNCTION {commit_fn}(
    p_run text, p_owner text, p_epoch bigint,
    w_step bigint, w_task_path text, w_node text, w_seq bigint, w_update text, w_goto text,
    w_usage text, w_started_at double precision, w_finished_at double precision, w_hash text,
    s_step bigint, s_tasks text, s_joins text, s_snapshot text, s_created_at double precision,
    s_hash text,
    r_status text, r_head_step bigint, r_error text, r_updated_at double precision,
    r_mhash text
) RETURNS TABLE (f_owner text, f_epoch bigint, f_cancelled boolean, f_applied boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_owner text;
    v_epoch bigint;
    v_cancelled boolean;
BEGIN
    -- the fence: the run row locked as its own UPDATE would lock it (see _sql_leases)
    SELECT r."owner", r."epoch",
           EXISTS (SELECT 1 FROM {signals} g WHERE g."run_id" = p_run AND g."kind" = 'cancel')
      INTO v_owner, v_epoch, v_cancelled
      FROM {runs} r WHERE r."id" = p_run FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- no row: the caller raises RunNotFound (unfenced) or LeaseLost
    END IF;
    IF p_epoch IS NOT NULL
       AND (v_owner IS DISTINCT FROM p_owner OR v_epoch <> p_epoch OR v_cancelled) THEN
        -- refused: nothing written; the caller raises LeaseLost or CancelledElsewhere
        RETURN QUERY SELECT v_owner, v_epoch, v_cancelled, false;
        RETURN;
    END IF;
    IF w_step IS NOT NULL THEN
        INSERT INTO {writes} ("run_id", "step", "task_path", "node", "seq", "update", "goto",
                              "usage", "started_at", "finished_at", "hash")
        VALUES (p_run, w_step, w_task_path, w_node, w_seq, w_update, w_goto, w_usage,
                w_started_at, w_finished_at, w_hash);
    END IF;
    IF s_step IS NOT NULL THEN
        INSERT INTO {steps} ("run_id", "step", "tasks", "joins", "snapshot", "created_at",
                             "hash")
        VALUES (p_run, s_step, s_tasks, s_joins, s_snapshot, s_created_at, s_hash)
        ON CONFLICT ("run_id", "step") DO UPDATE SET
            "tasks" = EXCLUDED."tasks", "joins" = EXCLUDED."joins",
            "snapshot" = EXCLUDED."snapshot", "created_at" = EXCLUDED."created_at",
            "hash" = EXCLUDED."hash";
    END IF;
    IF r_status IS NOT NULL THEN
        UPDATE {runs} SET "status" = r_status, "head_step" = r_head_step, "error" = r_error,
            "updated_at" = r_updated_at, "mhash" = r_mhash,
            "wake_at" = CASE WHEN r_status = 'paused' THEN "wake_at" ELSE NULL END
        WHERE "id" = p_run;
    END IF;
    RETURN QUERY SELECT v_owner, v_epoch, v_cancelled, true;
END
$fn$"""
"""``{commit_fn}``: an activation's commit (fence check, write row, next step row, run
head) in one statement; what ``SQLWrites.commit`` does in five. The row hashes are
computed by the caller, as for every other write."""

_MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "m001_initial",
        (
            """CREATE TABLE {runs} (
                "id" text COLLATE "C" PRIMARY KEY,
                "graph" text NOT NULL,
                "fingerprint" text NOT NULL,
                "graph_doc" text,
                "status" text NOT NULL,
                "input" text NOT NULL,
                "head_step" bigint NOT NULL,
                "error" text,
                "parent_id" text COLLATE "C",
                "parent_step" bigint,
                "config" text,
                "created_at" double precision,
                "updated_at" double precision,
                "hash" text NOT NULL,
                "mhash" text
            )""",
            # no index on updated_at: it changes on every commit (as in SQLiteStore)
            'CREATE INDEX "runs_created_at" ON {runs} ("created_at")',
            'CREATE INDEX "runs_parent_id" ON {runs} ("parent_id")',
            """CREATE TABLE {steps} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "tasks" text NOT NULL,
                "joins" text,
                "snapshot" text,
                "created_at" double precision,
                "hash" text NOT NULL,
                PRIMARY KEY ("run_id", "step")
            )""",
            """CREATE TABLE {writes} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "task_path" text COLLATE "C" NOT NULL,
                "node" text NOT NULL,
                "seq" bigint NOT NULL,
                "update" text NOT NULL,
                "goto" text,
                "usage" text,
                "started_at" double precision,
                "finished_at" double precision,
                "hash" text NOT NULL,
                PRIMARY KEY ("run_id", "step", "task_path")
            )""",
            """CREATE TABLE {effects} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "task_path" text COLLATE "C" NOT NULL,
                "seq" bigint NOT NULL,
                "name" text NOT NULL,
                "request" text NOT NULL,
                "response" text NOT NULL,
                "created_at" double precision,
                "hash" text NOT NULL,
                PRIMARY KEY ("run_id", "step", "task_path", "seq")
            )""",
            """CREATE TABLE {interrupts} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "task_path" text COLLATE "C" NOT NULL,
                "seq" bigint NOT NULL,
                "payload" text NOT NULL,
                "answer" text,
                "created_at" double precision,
                "hash" text NOT NULL,
                PRIMARY KEY ("run_id", "step", "task_path", "seq")
            )""",
            """CREATE TABLE {attempts} (
                "run_id" text COLLATE "C" NOT NULL,
                "step" bigint NOT NULL,
                "task_path" text COLLATE "C" NOT NULL,
                "attempt" bigint NOT NULL,
                "error" text,
                "created_at" double precision,
                PRIMARY KEY ("run_id", "step", "task_path", "attempt")
            )""",
            """CREATE TABLE {signals} (
                "run_id" text COLLATE "C" NOT NULL,
                "kind" text COLLATE "C" NOT NULL,
                "created_at" double precision,
                PRIMARY KEY ("run_id", "kind")
            )""",
        ),
    ),
    (
        # one writer per run: the owner, its fencing epoch and its lease expiry (the
        # columns of SQLiteStore's m002_leases)
        "m002_leases",
        (
            'ALTER TABLE {runs} ADD COLUMN "owner" text, '
            'ADD COLUMN "epoch" bigint NOT NULL DEFAULT 0, '
            'ADD COLUMN "lease_until" double precision',
        ),
    ),
    (
        # mirrors SQLiteStore's m003_blobs: large effect results stored once by content
        # hash (see _postgres_blobs; rows written before that keep their results inline)
        "m003_blobs",
        ('CREATE TABLE {blobs} ("hash" text COLLATE "C" PRIMARY KEY, "data" text NOT NULL)',),
    ),
    (
        # mirrors SQLiteStore's m004_meta: a random id naming this database
        "m004_meta",
        (
            'CREATE TABLE {meta} ("key" text COLLATE "C" PRIMARY KEY, "value" text NOT NULL)',
            'INSERT INTO {meta} ("key", "value") '
            "VALUES ('database_id', md5(random()::text || clock_timestamp()::text))",
        ),
    ),
    (
        # mirrors SQLiteStore's m301_threads: a run may be a turn of a thread; exactly
        # one caller takes each turn
        "m301_threads",
        (
            'ALTER TABLE {runs} ADD COLUMN "thread_id" text COLLATE "C", ADD COLUMN "turn" bigint',
            'CREATE UNIQUE INDEX "runs_thread_turn" ON {runs} ("thread_id", "turn")',
        ),
    ),
    (
        # mirrors SQLiteStore's m401_events: the live view of runs (events as JSON)
        "m401_events",
        (
            """CREATE TABLE {events} (
                "run_id" text COLLATE "C" NOT NULL,
                "seq" bigint NOT NULL,
                "kind" text NOT NULL,
                "data" text NOT NULL,
                "created_at" double precision NOT NULL,
                PRIMARY KEY ("run_id", "seq")
            )""",
        ),
    ),
    (
        # the fleet (flowstate.checkpoints._queue): runs waiting for a worker, the workers
        # themselves, and flow-control rows. New tables only: nothing existing changes.
        "m501_queue",
        (
            """CREATE TABLE {queue} (
                "run_id" text COLLATE "C" PRIMARY KEY,
                "queue" text COLLATE "C" NOT NULL,
                "graph" text COLLATE "C" NOT NULL,
                "priority" integer NOT NULL DEFAULT 0,
                "available_at" double precision NOT NULL,
                "attempts" integer NOT NULL DEFAULT 0,
                "max_attempts" integer NOT NULL,
                "worker" text COLLATE "C",
                "claimed_until" double precision,
                "reasons" text NOT NULL DEFAULT '[]',
                "created_at" double precision NOT NULL
            )""",
            'CREATE INDEX "queue_pick" ON {queue} ("queue", "priority" DESC, "available_at")',
            'CREATE INDEX "queue_worker" ON {queue} ("worker")',
            """CREATE TABLE {workers} (
                "id" text COLLATE "C" PRIMARY KEY,
                "host" text NOT NULL,
                "pid" integer NOT NULL,
                "queues" text NOT NULL,
                "graphs" text NOT NULL,
                "concurrency" integer NOT NULL,
                "state" text NOT NULL,
                "started_at" double precision NOT NULL,
                "heartbeat_at" double precision NOT NULL
            )""",
            """CREATE TABLE {flow_limits} (
                "key" text COLLATE "C" PRIMARY KEY,
                "max_running" integer,
                "per_second" double precision,
                "burst" double precision,
                "tokens" double precision,
                "updated_at" double precision
            )""",
        ),
    ),
    (
        # mirrors SQLiteStore's m601_timers_schedules: wake-up times, schedules, firings
        "m601_timers_schedules",
        (
            'ALTER TABLE {runs} ADD COLUMN "wake_at" double precision',
            'CREATE INDEX ON {runs} ("wake_at") WHERE "wake_at" IS NOT NULL',
            """CREATE TABLE {schedules} (
                "name" text COLLATE "C" PRIMARY KEY,
                "graph" text NOT NULL,
                "cron" text NOT NULL,
                "tz" text NOT NULL,
                "input" text NOT NULL,
                "catchup" text NOT NULL,
                "paused" bigint NOT NULL,
                "next_fire" double precision NOT NULL,
                "created_at" double precision,
                "updated_at" double precision
            )""",
            """CREATE TABLE {firings} (
                "schedule" text COLLATE "C" NOT NULL,
                "fire_time" double precision NOT NULL,
                "run_id" text COLLATE "C" NOT NULL,
                "created_at" double precision,
                PRIMARY KEY ("schedule", "fire_time")
            )""",
        ),
    ),
    (
        # issue 25: an activation's commit in one statement, one round trip (see
        # PostgresStore.commit). No table changes: a schema without it still works (the
        # commit then takes the statement-per-row path).
        "m850_commit_fn",
        (COMMIT_FN,),
    ),
)

FLEET_TABLES = ("queue", "workers", "flow_limits")
"""The fleet's tables (migration ``m501_queue``): not per-run checkpoint tables."""


_MAX_CHANNEL = 63
"""PostgreSQL truncates identifiers (channel names) to 63 bytes."""

FLEET_CHANNEL = "fleet"
"""The channel of a schema's fleet (``store.listen(FLEET_CHANNEL)``): ``work:<run_id>``
when a run is queued or handed back, ``signal:<kind>:<run_id>`` for pause and cancel."""


def channel_name(schema: str, channel: str) -> str:
    """The server-side channel of ``channel`` on ``schema``: ``<schema>:<channel>``, or a
    digest of it when that is longer than PostgreSQL's 63-byte identifiers."""
    if not isinstance(channel, str) or not channel or "\x00" in channel:
        raise ConfigError(f"a channel is a non-empty string without NUL, not {channel!r}")
    name = f"{schema}:{channel}"
    if len(name.encode()) <= _MAX_CHANNEL:
        return name
    return "fs:" + hashlib.sha256(name.encode()).hexdigest()[:40]


def fleet_channel(schema: str) -> str:
    """The server-side LISTEN/NOTIFY channel of a schema's fleet (new work, cancel and
    pause signals): ``store.listen(FLEET_CHANNEL)`` hears it."""
    return channel_name(schema, FLEET_CHANNEL)


MIGRATIONS: tuple[str, ...] = tuple(name for name, _ in _MIGRATIONS)
"""Names of the migrations this version applies, in order."""

# -- columns and hashes (the same as SQLiteStore's) ----------------------------------------
