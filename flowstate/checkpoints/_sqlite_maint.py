"""``SQLiteStore``'s maintenance: content-addressed blobs of large effect results,
integrity check, sizes, child runs, deletion, state-schema migration of a stored run and
WAL shrinking."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from flowstate.errors import CorruptRowError, StoreIOError

from ._common import (
    PER_RUN_TABLES,
    TABLE_MODELS,
    children_range,
    decode_row,
    direct_children,
    hashed_columns,
    migrated_rows,
)
from ._crypto import is_sealed
from ._records import EffectRecord

__all__ = ["BLOB_MIN_BYTES", "BLOB_PREFIX", "SQLiteMaintenance", "blobbed"]

BLOB_MIN_BYTES = 8 * 1024
"""Effect results at least this large are stored once in ``blobs`` by their sha256 and
referenced as ``@blob:<hash>`` (a prefix no JSON text can start with)."""
BLOB_PREFIX = "@blob:"

JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": ("graph_doc", "input", "config"),
    "steps": ("tasks", "joins", "snapshot"),
    "writes": ("update", "goto", "usage"),
    "effects": ("request", "response"),
    "interrupts": ("payload", "answer"),
}
"""The columns of each hashed table that hold JSON text (None allowed where nullable)."""

QUARANTINE_PREFIX = "quarantine_"
"""``doctor --quarantine`` moves a run's rows from ``t`` into ``quarantine_t``."""


def blobbed(c: sqlite3.Connection, e: EffectRecord) -> EffectRecord:
    """Store a large effect result once, by content hash, and reference it."""
    if len(e.response) < BLOB_MIN_BYTES:
        return e
    digest = hashlib.sha256(e.response.encode()).hexdigest()
    c.execute("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", [digest, e.response])
    return e.model_copy(update={"response": BLOB_PREFIX + digest})


_SELF_OR_CHILDREN = '("{col}" = ? OR ("{col}" >= ? AND "{col}" < ?))'
"""``col`` is the run id or starts with ``run id + "/"``, byte for byte; see
``_common.children_range``."""


class SQLiteMaintenance:
    """Mixin of ``SQLiteStore``: uses its ``_lock``, ``conn``, ``write``, ``_read``,
    ``_fence``, ``get_run``, ``steps`` and ``writes``."""

    _lock: Any
    replacing_text: Any
    conn: sqlite3.Connection
    memory: bool
    path: Any
    _busy_timeout_ms: int
    write: Any
    cipher: Any
    _read: Any
    _fence: Any
    get_run: Any
    steps: Any
    writes: Any

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

    def damaged_rows(self, limit: int = 1000) -> list[tuple[str, str, int | None, str]]:
        """Every row that fails what a read checks, as ``(table, run id, step, problem)``:
        its integrity hash, its schema, the JSON of its JSON columns, and (for effects) its
        blob. Reads every row of every hashed table; stops after ``limit`` problems."""
        out: list[tuple[str, str, int | None, str]] = []
        for table in TABLE_MODELS:
            names = ", ".join(f'"{c}"' for c in hashed_columns(table))
            with self._lock, self.replacing_text():
                try:
                    self._scan_table(table, names, out, limit)
                except sqlite3.OperationalError:  # the table is missing: integrity says so
                    continue
                except sqlite3.DatabaseError as e:  # a page of it is damaged beyond reading
                    out.append((table, "", None, f"table cannot be read past a damaged page: {e}"))
                if len(out) >= limit:
                    return out
        return out

    def _scan_table(
        self, table: str, names: str, out: list[tuple[str, str, int | None, str]], limit: int
    ) -> None:
        """Append the damaged rows of ``table`` to ``out`` (at most ``limit`` in all)."""
        cur = self.conn.execute(f'SELECT {names} FROM "{table}"')
        for row in cur:
            if len(out) >= limit:
                return
            try:
                rec = decode_row(table, row)
                for col in JSON_COLUMNS.get(table, ()):
                    text = getattr(rec, col)
                    if text is None or is_sealed(text) or text.startswith(BLOB_PREFIX):
                        continue
                    try:
                        json.loads(text)
                    except ValueError as e:
                        raise CorruptRowError(
                            table,
                            str(row[0]),
                            getattr(rec, "step", None),
                            f"column '{col}' is not JSON ({e})",
                        ) from None
                if table == "effects":
                    self._unblob(rec)
            except CorruptRowError as e:
                out.append((e.table, e.run_id, e.step, e.message.split(": ", 1)[-1]))
            except (TypeError, ValueError) as e:  # a row too damaged to even split
                out.append((table, str(row[0]), None, f"unreadable row: {e}"))

    def quarantine_run(self, run_id: str) -> dict[str, int]:
        """Move a run's rows (child runs included) out of the tables the engine reads, into
        ``quarantine_<table>`` tables of the same file, in one transaction. Nothing is
        deleted; the rest of the database stays usable. Returns rows moved per table."""
        params = [run_id, *children_range(run_id)]
        moved: dict[str, int] = {}
        with self.write() as c:
            for table, col in PER_RUN_TABLES:
                q = f'"{QUARANTINE_PREFIX}{table}"'
                where = _SELF_OR_CHILDREN.format(col=col)
                c.execute(f'CREATE TABLE IF NOT EXISTS {q} AS SELECT * FROM "{table}" WHERE 0')
                n = c.execute(
                    f'INSERT INTO {q} SELECT * FROM "{table}" WHERE {where}', params
                ).rowcount
                c.execute(f'DELETE FROM "{table}" WHERE {where}', params)
                if n:
                    moved[table] = n
        return moved

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
        lo, hi = children_range(run_id)
        rows = self._read("SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id", [lo, hi])
        return direct_children(lo, [r[0] for r in rows])

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything hanging off it, child runs included."""
        params = [run_id, *children_range(run_id)]
        with self.write() as c:
            for table, col in PER_RUN_TABLES:
                c.execute(
                    f'DELETE FROM "{table}" WHERE ' + _SELF_OR_CHILDREN.format(col=col), params
                )
            # blobs no effect refers to any more
            c.execute(
                "DELETE FROM blobs WHERE hash NOT IN (SELECT substr(response, ?) FROM effects "
                "WHERE substr(response, 1, ?) = ?)",
                [len(BLOB_PREFIX) + 1, len(BLOB_PREFIX), BLOB_PREFIX],
            )

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
            run_vals, steps, writes = migrated_rows(
                self.get_run(run_id),
                self.steps(run_id),
                self.writes(run_id),
                state=state,
                update=update,
                fingerprint=fingerprint,
                graph_doc=graph_doc,
                seal=self.cipher.seal,
            )
            c.execute(
                "UPDATE runs SET input = ?, fingerprint = ?, graph_doc = ?, hash = ? WHERE id = ?",
                [*run_vals, run_id],
            )
            for st, h in steps:
                c.execute(
                    # tasks too: sealed again with the snapshot (a new nonce, a new hash)
                    "UPDATE steps SET snapshot = ?, tasks = ?, hash = ? "
                    "WHERE run_id = ? AND step = ?",
                    [st.snapshot, st.tasks, h, run_id, st.step],
                )
            for w, h in writes:
                c.execute(
                    'UPDATE writes SET "update" = ?, goto = ?, hash = ? '
                    "WHERE run_id = ? AND step = ? AND task_path = ?",
                    [w.update, w.goto, h, run_id, w.step, w.task_path],
                )

    def vacuum(self) -> None:
        """Fold the WAL into the file and rebuild it without free pages (``VACUUM``)."""
        if self.memory:
            return
        with self._lock:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                self.conn.execute("VACUUM")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.DatabaseError as e:
                raise StoreIOError(f"VACUUM of {self.path} failed: {e}") from e

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
