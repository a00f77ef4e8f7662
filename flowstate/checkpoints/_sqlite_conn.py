"""``SQLiteStore``'s connection: opening the file, the schema migrations, ``BEGIN
IMMEDIATE`` write transactions, reads, and decoding of stored rows.

Why ``BEGIN IMMEDIATE`` and not sqlite-utils' ``atomic()``: see ``_sqlite``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from flowstate._crashpoints import crash_point
from flowstate.errors import ConfigError, StoreError, StoreIOError

from ._common import decode_row, hashed_columns
from ._crypto import Keyring, RowCipher
from ._sqlite_schema import migrations

__all__ = ["MAX_ROW_BYTES", "Durability", "SQLiteConnection"]

Durability = Literal["normal", "full"]
"""``normal``: WAL + synchronous=NORMAL, committed activations survive a process crash.
``full``: WAL + synchronous=FULL, they also survive an OS crash or power loss."""

MAX_ROW_BYTES = 256 * 1024 * 1024
"""SQLITE_LIMIT_LENGTH backstop; the engine's own byte limits are far lower."""


_decode_text = functools.partial(str, encoding="utf-8", errors="replace")
"""The ``text_factory`` of a read that met bytes that are not UTF-8. SQLite does not
check that TEXT is UTF-8, so a damaged row can hold any bytes, and sqlite3's default
factory then fails the whole query ("Could not decode to UTF-8 column …") without naming
the row. Decoding with U+FFFD replacement lets the row reach ``_decode``, whose hash
check names its table, run and step. Valid UTF-8 decodes exactly as with the default
factory, so stored hashes still match; the default (C) factory is used until a query
fails that way, because a Python factory costs ~5 µs per row read (bench W5)."""


PAGE_SIZE = 1024
"""Page size of a new database file (an existing file keeps its own). Rows here are an
activation's update (often under 1 kB) and small step, run and event rows: with 4 kB
pages every table and index costs 4 kB empty and a 1.1 kB row leaves a quarter of its
page unused; with 1 kB pages a larger row spills whole into overflow pages, each WAL
frame is a quarter of the size, and the same run takes 40% fewer bytes (bench W2)."""


def _has_bytes(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _not_utf8(e: BaseException) -> bool:
    return isinstance(e, sqlite3.OperationalError) and "decode to UTF-8" in str(e)


_MARK = ("encryption", "aes-256-gcm")
"""The ``meta`` row marking a database whose payload columns are sealed."""

_DAMAGE = (sqlite3.DatabaseError, UnicodeDecodeError)
"""What SQLite raises on a damaged file: its own errors, and ``UnicodeDecodeError`` when
an error message quotes damaged bytes (a garbled name in the schema) that sqlite3 cannot
decode to build the exception."""

_OPEN_DAMAGE = (*_DAMAGE, KeyError, TypeError, ValueError)
"""…plus what sqlite-utils raises reading a damaged migrations table while opening."""

_UNREAD: Any = object()
"""``_check_identity``: the caller has not read the stored database id."""


class SQLiteConnection:
    """One SQLite connection, used from one event loop; every write is one ``BEGIN
    IMMEDIATE … COMMIT``. The base of ``SQLiteStore``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "normal",
        busy_timeout_ms: int = 30_000,
        migrate: bool = True,
        encryption: Keyring | None = None,
    ) -> None:
        """Open (creating if needed) the store at ``path``.

        ``encryption``: seal payload columns with this keyring (``_crypto``); the database
        is then marked encrypted, and a store opened on it without a keyring refuses to
        read sealed values or write plain ones.

        ``migrate=False`` skips the schema migrations: the file is opened as it is, for
        diagnosis (``flowstate doctor``) of a database whose migrations table cannot be
        read. Such a store may lack tables; use ``integrity_check`` and ``table_sizes``.
        """
        if durability not in ("normal", "full"):
            raise ConfigError(
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
        self.database_id: str | None = None
        """The id in this database's ``meta`` row, read at open; every write checks it."""
        self._inode: tuple[int, int] | None = None
        if not self.memory:
            self._refuse_truncated()
        fresh = not self.memory and not _has_bytes(self.path)
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
            if fresh:  # only an empty file takes a page size (before WAL, before tables)
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {durability.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_ROW_BYTES)
        except _DAMAGE as e:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            raise StoreIOError(f"cannot open checkpoint database {self.path}: {e}") from e
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.cipher = RowCipher(encryption, self._marked_encrypted)
        if migrate:
            self._migrate()
        self._read_identity()
        if encryption is not None and migrate and self.database_id is not None:
            with self.write() as c:
                c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", _MARK)

    _KID_SQL = "substr({c}, 8, instr(substr({c}, 8), ':') - 1)"
    """The key id of a sealed value ``fsenc1:<kid>:…`` in SQL (``key_ids``)."""

    def _marked_encrypted(self) -> bool:
        """Whether the ``meta`` table says this database is encrypted."""
        try:
            rows = self._read("SELECT 1 FROM meta WHERE key = ?", [_MARK[0]])
        except StoreIOError:
            return False
        return bool(rows)

    def _refuse_truncated(self) -> None:
        """An empty (or missing) main file next to a WAL holding frames is a database that
        was truncated or deleted under its WAL: opening it would quietly create a fresh
        schema where runs were. Refuse."""
        wal = Path(f"{self.path}-wal")
        try:
            main_size = self.path.stat().st_size if self.path.exists() else 0
            wal_size = wal.stat().st_size if wal.exists() else 0
        except OSError:
            return
        if main_size == 0 and wal_size > 32:
            raise StoreIOError(
                f"checkpoint database {self.path} is empty or missing but its WAL "
                f"({wal}, {wal_size} bytes) is not: the file was truncated or deleted while "
                "in use. flowstate will not create a fresh database over it; restore the "
                "file from a backup, or move the WAL away to start a new database"
            )

    def _read_identity(self) -> None:
        try:
            rows = self.conn.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchall()
        except _DAMAGE:
            rows = []  # opened with migrate=False on an older or damaged file
        self.database_id = str(rows[0][0]) if rows else None
        if not self.memory:
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                self._inode = (st.st_dev, st.st_ino)

    def _check_identity(self, c: sqlite3.Connection, stored: Any = _UNREAD) -> None:
        """Inside a write transaction: the file at ``path`` is still the database this
        store opened (not deleted, replaced or truncated under it). ``stored``: the
        ``meta`` row's database id when the caller has read it already."""
        if self.database_id is None:
            return
        problem = ""
        if self._inode is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) != self._inode:
                    problem = "was replaced by another file"
            except FileNotFoundError:
                problem = "was deleted"
        if not problem and stored != self.database_id:
            try:
                row = c.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchone()
            except _DAMAGE:
                row = None
            if row is None or row[0] != self.database_id:
                problem = f"no longer holds database {self.database_id} (truncated or re-created)"
        if problem:
            raise StoreIOError(
                f"checkpoint database {self.path} {problem} while this process had it open; "
                "nothing was written. Every run this process was executing is unaffected in "
                "the original database, if it still exists: restore it and resume"
            )

    def _migrate(self) -> None:
        try:
            with self.write():
                migrations.apply(self.db)
        except (*_OPEN_DAMAGE, StoreError) as e:
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
    def write(self, identity: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, started with ``BEGIN IMMEDIATE``.

        ``identity=False``: the caller checks the file's identity itself, inside the
        transaction and before it writes (``SQLiteStore.commit`` reads the database id
        with the run's fence in one statement, ``_fenced``).

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
            except _DAMAGE as e:
                raise StoreIOError(f"cannot start a write transaction on {self.path}: {e}") from e
            try:
                if identity:
                    self._check_identity(self.conn)
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
                if isinstance(e, _DAMAGE) and not isinstance(e, sqlite3.ProgrammingError):
                    raise StoreIOError(
                        f"write failed on {self.path}: {e}; the transaction was rolled back. "
                        "If the database is damaged, run `flowstate doctor`"
                    ) from e
                raise
            crash_point("store.before_commit")
            try:
                self.conn.execute("COMMIT")
            except _DAMAGE as e:
                with contextlib.suppress(sqlite3.DatabaseError):
                    self.conn.execute("ROLLBACK")
                raise StoreIOError(f"commit failed on {self.path}: {e}") from e
            self.commits += 1
            crash_point("store.after_commit")

    @staticmethod
    @functools.cache
    def _stmt(template: str) -> str:
        """A statement written with ``?`` parameters and ``{table}`` names (shared with
        ``PostgresStore``, see ``_sql_leases``) in this store's form."""
        return re.sub(r"\{([a-z_]+)\}", r"\1", template)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                try:
                    return self.conn.execute(sql, params).fetchall()
                except sqlite3.OperationalError as e:
                    if not _not_utf8(e):
                        raise
                with self.replacing_text():  # a damaged row: read it, let _decode name it
                    return self.conn.execute(sql, params).fetchall()
            except _DAMAGE as e:
                raise StoreIOError(f"read failed on {self.path}: {e}") from e

    @contextlib.contextmanager
    def replacing_text(self) -> Iterator[None]:
        """Within: text that is not UTF-8 reads with U+FFFD (``_decode_text``)."""
        with self._lock:
            self.conn.text_factory = _decode_text
            try:
                yield
            finally:
                self.conn.text_factory = str

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- row decoding -------------------------------------------------------------

    def _decode(self, table: str, row: Sequence[Any]) -> Any:
        return decode_row(table, row)

    def _select(self, table: str, where: str, params: Sequence[Any], order: str = "") -> list[Any]:
        sql = _select_sql(table, where, order)
        return [self.cipher.open(table, self._decode(table, r)) for r in self._read(sql, params)]


@functools.lru_cache(maxsize=256)
def _select_sql(table: str, where: str, order: str) -> str:
    """The ``SELECT`` of ``_select`` (a handful of distinct ones, built once each)."""
    names = ", ".join(f'"{c}"' for c in hashed_columns(table))
    sql = f'SELECT {names} FROM "{table}" WHERE {where}'
    return f"{sql} ORDER BY {order}" if order else sql
