"""``MemoryStore``: the SQLite file (through sqlite-utils) that every memory persists in."""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
from collections.abc import Iterator

from sqlite_utils import Database

from ._backend import BaseMemoryStore
from ._embed import Embedder
from ._errors import MemoryConfigError, MemoryStoreError
from ._schema import ensure_schema
from ._sql import SQLITE

__all__ = ["MemoryStore"]


class MemoryStore(BaseMemoryStore):
    """Memories persisted in one SQLite file, shared by every process that opens it.

    ``MemoryStore("agent.db")`` opens (or creates) the file, switches it to WAL, and creates
    the ``memories`` table. ``MemoryStore(db)`` uses an existing ``sqlite_utils.Database``,
    e.g. the engine's checkpoint database, so memories and checkpoints share one file and one
    transaction.

    Every write transaction the store opens starts with ``BEGIN IMMEDIATE``: it takes the
    write lock up front, so concurrent processes queue on the busy timeout instead of failing
    with "database is locked" when a deferred read transaction tries to upgrade.

    Get memories with :meth:`memory` (one kind) or :meth:`composite`. Each namespace (an agent,
    a user, a crew) is isolated; two stores on the same file see each other's commits, and a
    read after another process wrote catches up with what changed, not the whole namespace.
    """

    dialect = SQLITE

    def __init__(
        self,
        path_or_db: str | pathlib.Path | Database,
        *,
        embedder: Embedder | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``timeout``: seconds a write waits for another process's write lock."""
        if isinstance(path_or_db, Database):
            self.db = path_or_db
            self._owns_db = False
        elif isinstance(path_or_db, (str, pathlib.Path)):
            # usable from any thread: the store serialises its use of it with a lock
            conn = sqlite3.connect(str(path_or_db), timeout=timeout, check_same_thread=False)
            self.db = Database(conn)
            self._owns_db = True
        else:
            raise MemoryConfigError(
                f"MemoryStore() takes a file path or a sqlite_utils.Database, got "
                f"{type(path_or_db).__name__}: wrap a sqlite3 connection as Database(conn)"
            )
        super().__init__(embedder)
        if self.db.conn.in_transaction:
            raise MemoryStoreError(
                "MemoryStore() was given a database with an open transaction; WAL mode and "
                "the schema must be set up outside it: create the store before BEGIN",
                code="FSM202",
            )
        try:
            if not self.db.memory and self.db.journal_mode != "wal":
                self.db.enable_wal()
        except sqlite3.Error as err:
            raise MemoryStoreError(
                f"could not switch {self._where()} to WAL mode: {err}", code="FSM201"
            ) from err
        ensure_schema(self.db)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The underlying sqlite3 connection."""
        return self.db.conn

    def close(self) -> None:
        """Close the connection if this store opened it (a passed-in Database stays open)."""
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> MemoryStore:
        return self

    def _where(self) -> str:
        for _, name, filename in self.conn.execute("PRAGMA database_list"):
            if name == "main":
                return repr(filename) if filename else "':memory:'"
        return "'?'"  # pragma: no cover

    # -- the backend's primitives -----------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        return self.db.conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front."""
        conn = self.conn
        if conn.in_transaction:
            raise MemoryStoreError(
                f"a transaction is already open on the connection of {self!r}, so a memory "
                "write cannot start its own: give the memory a buffer "
                "(store.memory(kind, namespace, buffer=ops)) and call "
                "store.apply_ops(conn, ops) inside your transaction",
                code="FSM202",
            )
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise MemoryStoreError(
                f"could not take the write lock of {self._where()}: {err}. Another process "
                "held it longer than the store's timeout; retry, or raise "
                "MemoryStore(..., timeout=...)",
                code="FSM201",
            ) from err
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _consistent_read(self) -> Iterator[sqlite3.Connection]:
        # A deferred BEGIN gives the reads one WAL snapshot. Only on a connection this store
        # owns: a borrowed one may be in use by its owner's transactions.
        conn = self.conn
        if not self._owns_db or conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _stamp(self) -> object:
        # data_version changes when another connection commits; total_changes when this one
        # writes. Neither changed: no namespace's head can have moved.
        (version,) = self.conn.execute("PRAGMA data_version").fetchone()
        return int(version), self.conn.total_changes
