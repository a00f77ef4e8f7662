"""The embedded checkpoint store: one SQLite file, WAL, ``BEGIN IMMEDIATE`` writes.

Why ``BEGIN IMMEDIATE`` and not sqlite-utils' ``atomic()``: a deferred ``BEGIN`` takes
the write lock only at the first write, and two connections that both read first can
deadlock, which SQLite reports at once as "database is locked" whatever the busy
timeout. Taking the write lock up front means the busy timeout applies and nothing after
``BEGIN IMMEDIATE`` can return SQLITE_BUSY (RELIABILITY.md, G6). sqlite-utils still owns
the schema: tables are created by migrations registered on ``sqlite_utils.Migrations``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import sqlite_utils
from pydantic import ValidationError

from flowstate._crashpoints import crash_point
from flowstate.errors import (
    CorruptRowError,
    RunNotFound,
    RunStateError,
    StoreError,
    StoreIOError,
)

from ._records import (
    AttemptRecord,
    EffectRecord,
    InterruptRecord,
    RunRecord,
    StepRecord,
    WriteRecord,
    row_hash,
)

__all__ = ["Durability", "SQLiteStore"]

Durability = Literal["normal", "full"]
"""``normal``: WAL + synchronous=NORMAL, committed activations survive a process crash.
``full``: WAL + synchronous=FULL, they also survive an OS crash or power loss."""

MAX_ROW_BYTES = 256 * 1024 * 1024
"""SQLITE_LIMIT_LENGTH backstop; the engine's own byte limits are far lower."""

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


BLOB_MIN_BYTES = 8 * 1024
"""Effect results at least this large are stored once in ``blobs`` by their sha256 and
referenced as ``@blob:<hash>`` (a prefix no JSON text can start with)."""
BLOB_PREFIX = "@blob:"


_RUN_COLS = tuple(RunRecord.model_fields)
_MUTABLE = ("status", "head_step", "error", "updated_at")
_RUN_IMMUTABLE = tuple(c for c in _RUN_COLS if c not in _MUTABLE)
_STEP_COLS = tuple(StepRecord.model_fields)
_WRITE_COLS = tuple(WriteRecord.model_fields)
_EFFECT_COLS = tuple(EffectRecord.model_fields)
_INTERRUPT_COLS = tuple(InterruptRecord.model_fields)
_TABLE_MODELS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    "runs": (RunRecord, _RUN_COLS),
    "steps": (StepRecord, _STEP_COLS),
    "writes": (WriteRecord, _WRITE_COLS),
    "effects": (EffectRecord, _EFFECT_COLS),
    "interrupts": (InterruptRecord, _INTERRUPT_COLS),
}


@functools.cache
def _insert_sql(table: str, cols: tuple[str, ...], verb: str = "INSERT") -> str:
    names = ", ".join(f'"{c}"' for c in (*cols, "hash"))
    marks = ", ".join("?" for _ in range(len(cols) + 1))
    return f'{verb} INTO "{table}" ({names}) VALUES ({marks})'


_RUN_INSERT = (
    'INSERT INTO "runs" ('
    + ", ".join(f'"{c}"' for c in (*_RUN_COLS, "hash", "mhash"))
    + ") VALUES ("
    + ", ".join("?" for _ in range(len(_RUN_COLS) + 2))
    + ")"
)


def _run_values(run: RunRecord) -> list[Any]:
    vals = [getattr(run, c) for c in _RUN_COLS]
    return [
        *vals,
        row_hash(*(getattr(run, c) for c in _RUN_IMMUTABLE)),
        row_hash(*(getattr(run, c) for c in _MUTABLE)),
    ]


def _blobbed(c: sqlite3.Connection, e: EffectRecord) -> EffectRecord:
    """Store a large effect result once, by content hash, and reference it."""
    if len(e.response) < BLOB_MIN_BYTES:
        return e
    digest = hashlib.sha256(e.response.encode()).hexdigest()
    c.execute("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", [digest, e.response])
    return e.model_copy(update={"response": BLOB_PREFIX + digest})


def _values(record: Any, cols: Sequence[str]) -> list[Any]:
    vals = [getattr(record, c) for c in cols]
    vals.append(row_hash(*vals))
    return vals


_decode_text = functools.partial(str, encoding="utf-8", errors="replace")
"""``text_factory`` of the connection. SQLite does not check that TEXT is UTF-8, so a
damaged row can hold any bytes, and sqlite3's default factory then fails the whole query
("Could not decode to UTF-8 column …") without naming the row. Decoding with U+FFFD
replacement lets the row reach ``_decode``, whose hash check names its table, run and
step. Valid UTF-8 decodes exactly as before, so stored hashes still match."""

_SELF_OR_CHILDREN = '("{col}" = ? OR ("{col}" >= ? AND "{col}" < ?))'
"""``col`` is the run id or starts with ``run id + "/"``, byte for byte; see
``_self_or_children_params``."""


def _children_range(run_id: str) -> tuple[str, str]:
    """``[lo, hi)`` holding exactly the texts that start with ``run_id + "/"``.

    With SQLite's BINARY collation (memcmp of UTF-8, i.e. code point order), a text
    with that prefix sorts at or after ``run_id/`` and before ``run_id0`` (``'0'`` is the
    character after ``'/'``), and every text in between has the prefix. Unlike ``LIKE``
    this is case-sensitive, has no wildcard or escape character, and can use the
    primary-key index of every table.
    """
    return run_id + "/", run_id + chr(ord("/") + 1)


def _self_or_children_params(run_id: str) -> list[str]:
    return [run_id, *_children_range(run_id)]


def _check_mutable(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(_MUTABLE)
    if unknown:
        raise ValueError(
            f"run fields {sorted(unknown)} cannot change after creation; only "
            f"{', '.join(_MUTABLE)} can"
        )


class SQLiteStore:
    """Checkpoint store on one SQLite file.

    One connection per store object, used from one event loop; every write is one
    ``BEGIN IMMEDIATE … COMMIT``. Several processes may share the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "normal",
        busy_timeout_ms: int = 30_000,
        migrate: bool = True,
    ) -> None:
        """Open (creating if needed) the store at ``path``.

        ``migrate=False`` skips the schema migrations: the file is opened as it is, for
        diagnosis (``flowstate doctor``) of a database whose migrations table cannot be
        read. Such a store may lack tables; use ``integrity_check`` and ``table_sizes``.
        """
        if durability not in ("normal", "full"):
            raise ValueError(
                f"durability must be 'normal' or 'full', not {durability!r}: 'normal' "
                "survives a process crash, 'full' also a power loss"
            )
        self.memory = str(path) == ":memory:"
        self.path = Path(path)
        self.durability: Durability = durability
        self._lock = threading.RLock()
        self.fences: dict[str, tuple[str, int]] = {}
        """run id -> (owner, epoch) this store object writes for; every write touching a
        fenced run checks, inside its transaction, that the epoch is still current."""
        self.commits = 0
        """Number of write transactions committed by this store object (for tests)."""
        try:
            if not self.memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.DatabaseError as e:
            raise StoreIOError(f"cannot open checkpoint database {self.path}: {e}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._busy_timeout_ms = int(busy_timeout_ms)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {durability.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_ROW_BYTES)
            conn.text_factory = _decode_text
        except sqlite3.DatabaseError as e:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            raise StoreIOError(f"cannot open checkpoint database {self.path}: {e}") from e
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        if migrate:
            self._migrate()

    def _migrate(self) -> None:
        try:
            with self.write():
                migrations.apply(self.db)
        except (sqlite3.DatabaseError, StoreError) as e:
            cause = e.__cause__ if isinstance(e, StoreError) and e.__cause__ else e
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            if "database is locked" in str(cause):
                hint = "another process held the write lock for the whole busy timeout; retry"
            else:
                hint = (
                    "the file may be damaged: run `flowstate doctor` (or "
                    f"`sqlite3 {self.path} 'PRAGMA integrity_check'`) to diagnose it"
                )
            raise StoreIOError(
                f"cannot read or migrate the schema of checkpoint database {self.path}: "
                f"{cause}; {hint}"
            ) from cause

    # -- transactions -------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, started with ``BEGIN IMMEDIATE``.

        If the body raises, the transaction is rolled back, then a ``sqlite3``
        constraint violation is re-raised as ``StoreError`` and any other
        ``sqlite3.DatabaseError`` (malformed page, I/O error, full disk) as
        ``StoreIOError``, with the SQLite error as ``__cause__``. Everything else
        (flowstate's own errors, ``ValueError``, ``sqlite3.ProgrammingError``, which is
        a bug in the caller, and ``BaseException`` s) propagates unchanged.
        """
        with self._lock:
            crash_point("store.before_begin")
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as e:
                raise StoreIOError(f"cannot start a write transaction on {self.path}: {e}") from e
            try:
                yield self.conn
            except BaseException as e:
                with contextlib.suppress(sqlite3.DatabaseError):
                    self.conn.execute("ROLLBACK")
                # flowstate's own errors, ValueError etc. and BaseExceptions (cancellation,
                # simulated crashes) propagate unchanged; SQLite's are typed as storage
                if isinstance(e, sqlite3.IntegrityError):
                    raise StoreError(
                        f"write refused by a constraint of checkpoint database {self.path}: "
                        f"{e}; nothing of this transaction was kept. A UNIQUE failure means "
                        "the row is already stored (another process may be running the "
                        "same run)"
                    ) from e
                if isinstance(e, sqlite3.DatabaseError) and not isinstance(
                    e, sqlite3.ProgrammingError
                ):
                    raise StoreIOError(
                        f"write failed on {self.path}: {e}; the transaction was rolled back. "
                        "If the database is damaged, run `flowstate doctor`"
                    ) from e
                raise
            crash_point("store.before_commit")
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                with contextlib.suppress(sqlite3.DatabaseError):
                    self.conn.execute("ROLLBACK")
                raise StoreIOError(f"commit failed on {self.path}: {e}") from e
            self.commits += 1
            crash_point("store.after_commit")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self.conn.execute(sql, params)
                return cur.fetchall()
            except sqlite3.DatabaseError as e:
                raise StoreIOError(f"read failed on {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- row decoding -------------------------------------------------------------

    def _decode(self, table: str, row: Sequence[Any]) -> Any:
        model, cols = _TABLE_MODELS[table]
        if table == "runs":
            d = dict(zip(cols, row[: len(cols)], strict=True))
            rid = str(d.get("id"))
            if (
                row_hash(*(d[c] for c in _RUN_IMMUTABLE)) != row[len(cols)]
                or row_hash(*(d[c] for c in _MUTABLE)) != row[len(cols) + 1]
            ):
                raise CorruptRowError("runs", rid, None, "integrity hash mismatch")
            try:
                return model.model_validate(d)
            except ValidationError as e:
                raise CorruptRowError("runs", rid, None, f"invalid row: {e}") from None
        vals, stored_hash = list(row[: len(cols)]), row[len(cols)]
        run_id = str(vals[0]) if vals else "?"
        step = vals[1] if table != "runs" and len(vals) > 1 and isinstance(vals[1], int) else None
        if row_hash(*vals) != stored_hash:
            raise CorruptRowError(table, run_id, step, "integrity hash mismatch")
        try:
            return model.model_validate(dict(zip(cols, vals, strict=True)))
        except ValidationError as e:
            raise CorruptRowError(table, run_id, step, f"invalid row: {e}") from None

    def _select(self, table: str, where: str, params: Sequence[Any], order: str = "") -> list[Any]:
        _, cols = _TABLE_MODELS[table]
        extra = ("hash", "mhash") if table == "runs" else ("hash",)
        names = ", ".join(f'"{c}"' for c in (*cols, *extra))
        sql = f'SELECT {names} FROM "{table}" WHERE {where}'
        if order:
            sql += f" ORDER BY {order}"
        return [self._decode(table, r) for r in self._read(sql, params)]

    # -- runs -----------------------------------------------------------------------

    def create_run(
        self,
        run: RunRecord,
        first_step: StepRecord,
        *,
        owner: str | None = None,
        ttl: float = 0.0,
    ) -> None:
        """Create a run and its first step; with ``owner``, also take its lease (epoch 1)."""
        with self.write() as c:
            try:
                c.execute(_RUN_INSERT, _run_values(run))
            except sqlite3.IntegrityError:
                raise RunStateError(
                    f"a run with id '{run.id}' already exists: resume it "
                    f"(`flowstate resume {run.id}`) or choose another run id"
                ) from None
            c.execute(_insert_sql("steps", _STEP_COLS), _values(first_step, _STEP_COLS))
            if owner is not None:
                c.execute(
                    "UPDATE runs SET owner = ?, epoch = 1, lease_until = ? WHERE id = ?",
                    [owner, time.time() + ttl, run.id],
                )
        if owner is not None:
            self.fences[run.id] = (owner, 1)

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._select("runs", "id = ?", [run_id])
        if not rows:
            raise RunNotFound(run_id)
        return rows[0]  # type: ignore[no-any-return]

    def find_run(self, run_id: str) -> RunRecord | None:
        rows = self._select("runs", "id = ?", [run_id])
        return rows[0] if rows else None

    def list_runs(
        self,
        *,
        status: str | None = None,
        graph: str | None = None,
        parent_id: str | None = None,
        include_children: bool = False,
        limit: int = 100,
        before: float | None = None,
    ) -> list[RunRecord]:
        clauses, params = ["1 = 1"], []  # type: ignore[var-annotated]
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if graph is not None:
            clauses.append("graph = ?")
            params.append(graph)
        if parent_id is not None:
            clauses.append("parent_id = ?")
            params.append(parent_id)
        if not include_children:
            # child runs of subgraph activations have '/' in their id
            clauses.append("instr(id, '/') = 0")
        if before is not None:
            clauses.append("created_at < ?")
            params.append(before)
        params.append(int(limit))
        return self._select(
            "runs", " AND ".join(clauses) + " ORDER BY created_at DESC, id LIMIT ?", params
        )

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change a run's status, head step or error (the only mutable columns)."""
        with self.write() as c:
            self._update_run(c, run_id, fields)
        return self.get_run(run_id)

    def _update_run(self, c: sqlite3.Connection, run_id: str, fields: dict[str, Any]) -> None:
        _check_mutable(fields)
        self._fence(c, run_id)
        sets = [f'"{k}" = ?' for k in fields]
        vals = list(fields.values())
        now = time.time()
        cur = c.execute(
            f"UPDATE runs SET {', '.join(sets)}{', ' if sets else ''}updated_at = ? "
            "WHERE id = ? RETURNING status, head_step, error, updated_at",
            [*vals, now, run_id],
        ).fetchone()
        if cur is None:
            raise RunNotFound(run_id)
        c.execute("UPDATE runs SET mhash = ? WHERE id = ?", [row_hash(*cur), run_id])

    # -- steps and writes -------------------------------------------------------------

    def commit(
        self,
        run_id: str,
        *,
        writes: Sequence[WriteRecord] = (),
        effects: Sequence[EffectRecord] = (),
        step: StepRecord | None = None,
        run_fields: dict[str, Any] | None = None,
        hook: Any = None,
    ) -> None:
        """Commit an activation (or a step boundary) in one transaction (G1).

        ``hook(conn)`` runs inside the same transaction (the engine applies a node's
        memory writes there).

        The write row, the effects journaled with it, the next step row and the run's
        head advance all land together or not at all.
        """
        if run_fields:
            _check_mutable(run_fields)
        with self.write() as c:
            self._fence(c, run_id)
            for w in writes:
                try:
                    c.execute(_insert_sql("writes", _WRITE_COLS), _values(w, _WRITE_COLS))
                except sqlite3.IntegrityError as e:
                    raise StoreError(
                        f"activation '{w.task_path}' of run {run_id} at step {w.step} is "
                        "already committed (table 'writes'), so this commit of it was refused "
                        "and nothing of it was stored. Only one process may execute a run at a "
                        f"time: check `flowstate runs` for another worker running {run_id}"
                    ) from e
            for e in effects:
                c.execute(
                    _insert_sql("effects", _EFFECT_COLS, "INSERT OR IGNORE"),
                    _values(_blobbed(c, e), _EFFECT_COLS),
                )
            if step is not None:
                c.execute(
                    _insert_sql("steps", _STEP_COLS, "INSERT OR REPLACE"), _values(step, _STEP_COLS)
                )
            if hook is not None:
                hook(c)
            if run_fields:
                if set(run_fields) >= {"status", "head_step", "error"}:
                    now = time.time()
                    st, hs, er = run_fields["status"], run_fields["head_step"], run_fields["error"]
                    cur = c.execute(
                        "UPDATE runs SET status = ?, head_step = ?, error = ?, updated_at = ?, "
                        "mhash = ? WHERE id = ?",
                        [st, hs, er, now, row_hash(st, hs, er, now), run_id],
                    )
                    if cur.rowcount != 1:
                        raise RunNotFound(run_id)
                else:
                    self._update_run(c, run_id, run_fields)

    def get_step(self, run_id: str, step: int) -> StepRecord | None:
        rows = self._select("steps", "run_id = ? AND step = ?", [run_id, step])
        return rows[0] if rows else None

    def latest_step(self, run_id: str) -> StepRecord | None:
        rows = self._select("steps", "run_id = ? ORDER BY step DESC LIMIT 1", [run_id])
        return rows[0] if rows else None

    def last_snapshot(self, run_id: str, at_or_before: int) -> StepRecord | None:
        rows = self._select(
            "steps",
            "run_id = ? AND step <= ? AND snapshot IS NOT NULL ORDER BY step DESC LIMIT 1",
            [run_id, at_or_before],
        )
        return rows[0] if rows else None

    def steps(self, run_id: str, start: int = 0, stop: int | None = None) -> list[StepRecord]:
        hi = stop if stop is not None else 2**62
        return self._select(
            "steps", "run_id = ? AND step >= ? AND step < ?", [run_id, start, hi], "step"
        )

    def writes(self, run_id: str, start: int = 0, stop: int | None = None) -> list[WriteRecord]:
        hi = stop if stop is not None else 2**62
        return self._select(
            "writes", "run_id = ? AND step >= ? AND step < ?", [run_id, start, hi], "step, seq"
        )

    # -- effects, interrupts, attempts -------------------------------------------------

    def record_effect(self, effect: EffectRecord, *, replace: bool = False) -> None:
        """Journal an effect (first record wins; ``replace`` overwrites it: a resumed
        activation whose request changed ran the effect again)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self.write() as c:
            self._fence(c, effect.run_id)
            c.execute(
                _insert_sql("effects", _EFFECT_COLS, verb),
                _values(_blobbed(c, effect), _EFFECT_COLS),
            )

    def effects(
        self, run_id: str, step: int | None = None, task_path: str | None = None
    ) -> list[EffectRecord]:
        where, params = "run_id = ?", [run_id]  # type: ignore[list-item]
        if step is not None:
            where += " AND step = ?"
            params.append(step)  # type: ignore[arg-type]
        if task_path is not None:
            where += " AND task_path = ?"
            params.append(task_path)
        rows = self._select("effects", where, params, "step, task_path, seq")
        return [self._unblob(e) for e in rows]

    def _unblob(self, e: EffectRecord) -> EffectRecord:
        if not e.response.startswith(BLOB_PREFIX):
            return e
        digest = e.response[len(BLOB_PREFIX) :]
        rows = self._read("SELECT data FROM blobs WHERE hash = ?", [digest])
        if not rows:
            raise CorruptRowError("blobs", e.run_id, e.step, f"blob {digest[:12]}… is missing")
        data = rows[0][0]
        if hashlib.sha256(str(data).encode()).hexdigest() != digest:
            raise CorruptRowError("blobs", e.run_id, e.step, f"blob {digest[:12]}… fails its hash")
        return e.model_copy(update={"response": data})

    def record_interrupt(self, intr: InterruptRecord, run_fields: dict[str, Any]) -> None:
        with self.write() as c:
            self._fence(c, intr.run_id)
            c.execute(
                _insert_sql("interrupts", _INTERRUPT_COLS, "INSERT OR REPLACE"),
                _values(intr, _INTERRUPT_COLS),
            )
            self._update_run(c, intr.run_id, run_fields)

    def interrupts(self, run_id: str, step: int | None = None) -> list[InterruptRecord]:
        if step is None:
            return self._select("interrupts", "run_id = ?", [run_id], "step, task_path, seq")
        return self._select(
            "interrupts", "run_id = ? AND step = ?", [run_id, step], "task_path, seq"
        )

    def answer_interrupt(self, intr: InterruptRecord, answer: str) -> None:
        new = intr.model_copy(update={"answer": answer})
        with self.write() as c:
            c.execute(
                _insert_sql("interrupts", _INTERRUPT_COLS, "INSERT OR REPLACE"),
                _values(new, _INTERRUPT_COLS),
            )

    def record_attempt(self, attempt: AttemptRecord) -> None:
        with self.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO attempts (run_id, step, task_path, attempt, error, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    attempt.run_id,
                    attempt.step,
                    attempt.task_path,
                    attempt.attempt,
                    attempt.error,
                    attempt.created_at,
                ],
            )

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        rows = self._read(
            "SELECT run_id, step, task_path, attempt, error, created_at FROM attempts "
            "WHERE run_id = ? ORDER BY step, task_path, attempt",
            [run_id],
        )
        return [
            AttemptRecord(
                run_id=r[0], step=r[1], task_path=r[2], attempt=r[3], error=r[4], created_at=r[5]
            )
            for r in rows
        ]

    # -- maintenance ---------------------------------------------------------------

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` report: ``"ok"``, the problems it found
        joined by ``"; "``, or ``"error: <message>"`` when SQLite cannot even run the
        check (e.g. ``"error: database disk image is malformed"``)."""
        with self._lock:
            try:
                rows = self.conn.execute("PRAGMA integrity_check").fetchall()
            except sqlite3.DatabaseError as e:
                return f"error: {e}"
        return "; ".join(str(r[0]) for r in rows)

    def table_sizes(self) -> dict[str, int]:
        """Row count of every table in the file (migrations bookkeeping included)."""
        names = [
            str(r[0])
            for r in self._read(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND substr(name, 1, 7) != 'sqlite_' ORDER BY name"
            )
        ]
        sizes: dict[str, int] = {}
        for name in names:
            quoted = name.replace('"', '""')
            sizes[name] = int(self._read(f'SELECT count(*) FROM "{quoted}"')[0][0])
        return sizes

    def largest_runs(self, limit: int = 10) -> list[tuple[str, int]]:
        """The ``limit`` runs with the most payload bytes, largest first, as
        ``(run id, bytes)``: the JSON of their writes (update, goto, usage), steps
        (tasks, joins, snapshot) and effects (request, response). Child runs of
        subgraph activations count on their own."""
        rows = self._read(
            """
            SELECT run_id, sum(n) AS total FROM (
                SELECT run_id, coalesce(length(CAST("update" AS BLOB)), 0)
                    + coalesce(length(CAST(goto AS BLOB)), 0)
                    + coalesce(length(CAST(usage AS BLOB)), 0) AS n FROM writes
                UNION ALL
                SELECT run_id, coalesce(length(CAST(tasks AS BLOB)), 0)
                    + coalesce(length(CAST(joins AS BLOB)), 0)
                    + coalesce(length(CAST(snapshot AS BLOB)), 0) FROM steps
                UNION ALL
                SELECT run_id, coalesce(length(CAST(request AS BLOB)), 0)
                    + coalesce(length(CAST(response AS BLOB)), 0) FROM effects
            )
            GROUP BY run_id ORDER BY total DESC, run_id LIMIT ?
            """,
            [int(limit)],
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    def child_run_ids(self, run_id: str) -> list[str]:
        """Ids of the direct child runs of ``run_id``'s subgraph activations, i.e. the
        runs with id ``run_id/<step>/<task_path>``, in id order.

        Only ids are read: a damaged row of some other run (a fork, a grandchild) cannot
        make this fail, unlike ``list_runs(parent_id=...)`` which decodes every row.
        """
        lo, hi = _children_range(run_id)
        rows = self._read("SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id", [lo, hi])
        out = []
        for r in rows:
            rid = r[0]
            if not isinstance(rid, str):
                continue
            step, sep, task = rid[len(lo) :].partition("/")
            if sep and task and "/" not in task and step.isascii() and step.isdigit():
                out.append(rid)
        return out

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything hanging off it, child runs included."""
        params = _self_or_children_params(run_id)
        with self.write() as c:
            for table, col in (
                ("writes", "run_id"),
                ("steps", "run_id"),
                ("effects", "run_id"),
                ("interrupts", "run_id"),
                ("attempts", "run_id"),
                ("signals", "run_id"),
                ("runs", "id"),
            ):
                c.execute(
                    f'DELETE FROM "{table}" WHERE ' + _SELF_OR_CHILDREN.format(col=col), params
                )
            # blobs no effect refers to any more
            c.execute(
                "DELETE FROM blobs WHERE hash NOT IN (SELECT substr(response, ?) FROM effects "
                "WHERE substr(response, 1, ?) = ?)",
                [len(BLOB_PREFIX) + 1, len(BLOB_PREFIX), BLOB_PREFIX],
            )

    # -- signals: pause and cancel requests from other processes ----------------------

    def send_signal(self, run_id: str, kind: str) -> None:
        with self.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO signals (run_id, kind, created_at) VALUES (?, ?, ?)",
                [run_id, kind, time.time()],
            )

    def signals(self, run_id: str) -> set[str]:
        return {
            str(r[0]) for r in self._read("SELECT kind FROM signals WHERE run_id = ?", [run_id])
        }

    def clear_signals(self, run_id: str) -> None:
        with self.write() as c:
            c.execute("DELETE FROM signals WHERE run_id = ?", [run_id])

    def visit_counts(self, run_id: str) -> dict[str, int]:
        rows = self._read(
            "SELECT node, count(*) FROM writes WHERE run_id = ? GROUP BY node", [run_id]
        )
        return {str(r[0]): int(r[1]) for r in rows}

    # -- one writer per run: leases and fencing -------------------------------------------

    def _fence(self, c: sqlite3.Connection, run_id: str) -> None:
        fence = self.fences.get(run_id)
        if fence is None:
            return
        row = c.execute("SELECT owner, epoch FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None or (row[0], row[1]) != fence:
            from flowstate.errors import LeaseLost

            now_owner = f"now held by {row[0]} at epoch {row[1]}" if row else "run deleted"
            raise LeaseLost(run_id, fence[1], now_owner)

    def acquire(self, run_id: str, owner: str, ttl: float, alive: Any = None) -> int:
        """Take the run's lease for ``owner`` (refused while another live owner holds an
        unexpired one) and return the new fencing epoch. ``alive(owner) -> bool|None`` lets
        the caller declare a holder dead before its lease expires (e.g. a dead local pid)."""
        from flowstate.errors import RunOwned

        with self.write() as c:
            row = c.execute(
                "SELECT owner, epoch, lease_until FROM runs WHERE id = ?", [run_id]
            ).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            holder, epoch, until = row
            now = time.time()
            if holder and holder != owner and until is not None and until > now:
                if alive is None or alive(holder) is not False:
                    raise RunOwned(run_id, holder, until)
            epoch = int(epoch or 0) + 1
            c.execute(
                "UPDATE runs SET owner = ?, epoch = ?, lease_until = ? WHERE id = ?",
                [owner, epoch, now + ttl, run_id],
            )
        self.fences[run_id] = (owner, epoch)
        return epoch

    def heartbeat(self, run_id: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when it was taken over (the caller must stop)."""
        with self.write() as c:
            cur = c.execute(
                "UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ? AND epoch = ?",
                [time.time() + ttl, run_id, owner, epoch],
            )
            return cur.rowcount == 1

    def release(self, run_id: str, owner: str, epoch: int) -> None:
        """Give the lease up (only if still held by this owner and epoch)."""
        self.fences.pop(run_id, None)
        with self.write() as c:
            c.execute(
                "UPDATE runs SET owner = NULL, lease_until = NULL "
                "WHERE id = ? AND owner = ? AND epoch = ?",
                [run_id, owner, epoch],
            )

    def lease(self, run_id: str) -> tuple[str | None, int, float | None]:
        """(owner, epoch, lease_until) of a run."""
        rows = self._read("SELECT owner, epoch, lease_until FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise RunNotFound(run_id)
        r = rows[0]
        return (r[0], int(r[1] or 0), r[2])

    # -- state-schema migration of a stored run ---------------------------------------

    def migrate_run(
        self,
        run_id: str,
        *,
        state: Any,
        update: Any,
        fingerprint: str,
        graph_doc: str,
    ) -> None:
        """Rewrite a run's stored JSON to a new state-schema version, in one transaction:
        ``state(raw) -> raw`` for the input and every snapshot, ``update(raw) -> raw`` for
        every committed update; the run then records the new graph fingerprint. Row hashes
        are recomputed. Used by resume, so new rows are never mixed with old ones."""
        with self.write() as c:
            self._fence(c, run_id)
            run = self.get_run(run_id)
            new_run = run.model_copy(
                update={
                    "input": state(run.input),
                    "fingerprint": fingerprint,
                    "graph_doc": graph_doc,
                }
            )
            vals = [getattr(new_run, k) for k in _RUN_IMMUTABLE]
            c.execute(
                "UPDATE runs SET input = ?, fingerprint = ?, graph_doc = ?, hash = ? WHERE id = ?",
                [new_run.input, fingerprint, graph_doc, row_hash(*vals), run_id],
            )
            for st in self.steps(run_id):
                if st.snapshot is None:
                    continue
                new = st.model_copy(update={"snapshot": state(st.snapshot)})
                c.execute(
                    "UPDATE steps SET snapshot = ?, hash = ? WHERE run_id = ? AND step = ?",
                    [new.snapshot, _values(new, _STEP_COLS)[-1], run_id, st.step],
                )
            for w in self.writes(run_id):
                new_w = w.model_copy(update={"update": update(w.update)})
                c.execute(
                    'UPDATE writes SET "update" = ?, hash = ? '
                    "WHERE run_id = ? AND step = ? AND task_path = ?",
                    [new_w.update, _values(new_w, _WRITE_COLS)[-1], run_id, w.step, w.task_path],
                )

    def shrink_wal(self) -> None:
        """Best effort, at the end of a run: fold the WAL into the database and truncate it,
        so the files on disk are about the size of the data. Gives up at once (no waiting)
        when another connection is busy; SQLite's auto-checkpoint then does it later."""
        if self.memory:
            return
        with self._lock:
            try:
                self.conn.execute("PRAGMA busy_timeout = 0")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.DatabaseError:
                pass
            finally:
                self.conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
