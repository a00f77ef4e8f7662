"""The SQLite memory tables, created and evolved through sqlite-utils migrations.

``0001_memories`` is the entries table; ``0002_revisions`` adds the per-namespace revisions
and tombstones that let readers catch up incrementally (see ``_sql.py``).
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database
from sqlite_utils.db import Table
from sqlite_utils.migrations import Migrations

from ._errors import MemoryStoreError
from ._ops import TABLE

__all__ = ["MIGRATIONS", "ensure_schema"]

MIGRATIONS = Migrations("flowstate.memory")
"""This package's migration set. Add a function per schema change; never edit an applied one."""


@MIGRATIONS(name="0001_memories")
def _create_memories(db: Database) -> None:
    table = db[TABLE]
    assert isinstance(table, Table)
    table.create(
        {
            "id": str,
            "namespace": str,
            "kind": str,
            "key": str,
            "content": str,
            "timestamp": float,
            "importance": float,
            "metadata": str,  # JSON object text
            "embedding": bytes,  # little-endian float32, `dim` values
            "dim": int,
            "seq": int,
            "embedder": str,  # name of the embedder that made `embedding`
        },
        pk="id",
        not_null={"namespace", "kind", "content", "timestamp", "importance", "metadata", "seq"},
        defaults={"metadata": "{}"},
    )
    table.create_index(["namespace", "kind"], index_name="memories_namespace_kind")
    # A semantic key names one fact per namespace: INSERT OR REPLACE of another id under the
    # same key replaces the old row, so two writers racing on one key cannot leave two facts.
    db.execute(
        f"CREATE UNIQUE INDEX memories_namespace_kind_key ON {TABLE} (namespace, kind, key) "
        "WHERE key IS NOT NULL"
    )


@MIGRATIONS(name="0002_revisions")
def _add_revisions(db: Database) -> None:
    # existing rows get revision 0: a reader at revision 0 has loaded the table in full
    db.execute(f"ALTER TABLE {TABLE} ADD COLUMN rev INTEGER NOT NULL DEFAULT 0")
    db.execute(f"CREATE INDEX memories_namespace_kind_rev ON {TABLE} (namespace, kind, rev)")
    db.execute(
        "CREATE TABLE memory_heads (namespace TEXT PRIMARY KEY, rev INTEGER NOT NULL, "
        "floor INTEGER NOT NULL)"
    )
    db.execute(
        "CREATE TABLE memory_tombstones (namespace TEXT NOT NULL, rev INTEGER NOT NULL, "
        "kind TEXT, id TEXT)"
    )
    db.execute("CREATE INDEX memory_tombstones_namespace_rev ON memory_tombstones (namespace, rev)")


def ensure_schema(db: Database | sqlite3.Connection) -> None:
    """Create or migrate the memory tables; cheap and safe to call on every start.

    Outside a transaction it takes the write lock with ``BEGIN IMMEDIATE`` (and only when a
    migration is pending), so concurrent processes migrate once. Inside the caller's open
    transaction it applies the migrations there, as savepoints, and leaves the commit to the
    caller.
    """
    database = db if isinstance(db, Database) else Database(db)
    conn = database.conn
    try:
        if conn.in_transaction:
            MIGRATIONS.apply(database)
            return
        if not MIGRATIONS.pending(database):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS.apply(database)  # re-reads what is applied, now under the lock
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as err:
        raise MemoryStoreError(
            f"could not create or migrate the {TABLE!r} table: {err}. Check that the database "
            "file is writable and not locked by a long-running writer",
            code="FSM201",
        ) from err
