"""A columnar, in-process view of one (namespace, kind): what retrieval ranks over.

A :class:`Snapshot` holds the scoring columns of every live entry (timestamp, seq,
importance, embedding, key) as numpy arrays, not the content. It is loaded from the database
once, then kept current incrementally: the rows and tombstones written after its revision
``rev`` are applied to it (:meth:`Snapshot.catch_up`), never a reload of the namespace.
Buffered memories read through a copy of the committed snapshot with their buffered ops
applied (:meth:`Snapshot.apply`, the in-process twin of the SQL in ``_sql.py``; the two must
agree, and ``tests/memory/test_memory_ops.py`` checks that with random op sequences), so they
see their own uncommitted writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._errors import MemoryConfigError
from ._models import MemoryEntry, MemoryKind
from ._ops import ClearOp, DeleteOp, MemoryOp, UpsertOp
from ._sql import ENTRY_COLS, SQLITE, Dialect, snapshot_rows

__all__ = ["Snapshot", "fetch_entries", "row_to_entry"]


def row_to_entry(row: Sequence[object]) -> MemoryEntry:
    """Build an entry from a row selected with ``ENTRY_COLS``."""
    (entry_id, namespace, kind, key, content, timestamp, importance, metadata) = row
    return MemoryEntry.model_validate(
        {
            "id": entry_id,
            "namespace": namespace,
            "kind": kind,
            "key": key,
            "content": content,
            "timestamp": timestamp,
            "importance": importance,
            "metadata": json.loads(str(metadata)) if metadata else {},
        }
    )


def fetch_entries(
    conn: Any, namespace: str, ids: Iterable[str], dialect: Dialect = SQLITE
) -> dict[str, MemoryEntry]:
    """The committed entries with these ids in ``namespace`` (missing ids are left out)."""
    wanted = list(dict.fromkeys(ids))
    found: dict[str, MemoryEntry] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = conn.execute(
            # SQLite's `+namespace` keeps the planner on the primary key: without statistics
            # it may pick the (namespace, kind) index and scan the whole namespace.
            dialect.q(
                f"SELECT {ENTRY_COLS} FROM {{m}} WHERE {dialect.pk_hint}namespace = ? "
                f"AND id IN ({marks})"
            ),
            (namespace, *chunk),
        )
        for row in rows:
            entry = row_to_entry(row)
            found[entry.id] = entry
    return found


class Snapshot:
    """Scoring columns of the live entries of one (namespace, kind)."""

    def __init__(self, namespace: str, kind: MemoryKind, *, keep_entries: bool = False) -> None:
        self.namespace = namespace
        self.kind: MemoryKind = kind
        self.keep_entries = keep_entries
        """Whether upserts also keep the full entry (overlays do; the shared cache does not)."""
        self.entries: dict[str, MemoryEntry] = {}
        """Full entries written by ops applied to this snapshot (when ``keep_entries``)."""
        self.embedder: str | None = None
        """Name of the embedder of the stored embeddings (first one seen)."""
        self.dim: int | None = None
        """Dimension of the stored embeddings (first one seen)."""
        self.conflict: tuple[str | None, int | None] | None = None
        """An (embedder, dim) that differs from the first one, if any row has one."""
        self.rev = 0
        """The namespace revision this snapshot reflects (see ``_sql.py``)."""
        self.checked: object = None
        """The store's change stamp when ``rev`` was last compared with the database."""
        self._reset()

    def _reset(self, capacity: int = 16) -> None:
        self.n = 0
        self.dead = 0
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.key_to_id: dict[str, str] = {}
        self.id_to_key: dict[str, str] = {}
        self.alive = np.zeros(capacity, dtype=bool)
        self.ts = np.zeros(capacity, dtype=np.float64)
        self.seq = np.zeros(capacity, dtype=np.int64)
        self.imp = np.zeros(capacity, dtype=np.float64)
        self.norm = np.zeros(capacity, dtype=np.float32)
        self.emb: np.ndarray | None = (
            None if self.dim is None else np.zeros((capacity, self.dim), dtype=np.float32)
        )
        self.entries = {}

    # -- loading and copying -------------------------------------------------------------

    @classmethod
    def load(cls, conn: Any, namespace: str, kind: MemoryKind) -> Snapshot:
        """Read the committed rows of (namespace, kind) from an SQLite connection."""
        return cls.from_rows(namespace, kind, snapshot_rows(SQLITE, conn, namespace, kind))

    @classmethod
    def from_rows(cls, namespace: str, kind: MemoryKind, rows: Sequence[Sequence[Any]]) -> Snapshot:
        """A snapshot of the rows (``SNAP_COLS`` of ``_sql.py``) of (namespace, kind)."""
        snap = cls(namespace, kind)
        n = len(rows)
        if not n:
            return snap
        columns = (list(column) for column in zip(*rows, strict=True))
        ids, keys, ts, imp, seq, blobs, dims, embedders, _ = columns
        for i, dim in enumerate(dims):
            if dim is not None:
                snap.dim, snap.embedder = int(dim), embedders[i]
                break
        snap._reset(max(16, n + n // 8))  # headroom: the next adds need not copy the matrix
        snap.n = n
        snap.ids = ids
        snap.index = dict(zip(ids, range(n), strict=True))
        for entry_id, key in zip(ids, keys, strict=True):
            if key is not None:
                snap.key_to_id[key] = entry_id
                snap.id_to_key[entry_id] = key
        snap.alive[:n] = True
        snap.ts[:n] = ts
        snap.imp[:n] = imp
        snap.seq[:n] = seq
        if snap.emb is not None and snap.dim is not None:
            same = [
                i
                for i in range(n)
                if blobs[i] is not None and dims[i] == snap.dim and embedders[i] == snap.embedder
            ]
            if len(same) == n:
                blob = b"".join(blobs)
                snap.emb[:n] = np.frombuffer(blob, dtype="<f4").reshape(n, snap.dim)
            else:
                for i in same:
                    snap.emb[i] = np.frombuffer(bytes(blobs[i]), dtype="<f4")
                for i in range(n):
                    if dims[i] is not None and (dims[i], embedders[i]) != (snap.dim, snap.embedder):
                        snap.conflict = (embedders[i], int(dims[i]))
                        break
            emb = snap.emb[:n]
            snap.norm[:n] = np.sqrt(np.einsum("ij,ij->i", emb, emb))
        return snap

    def catch_up(
        self,
        rows: Sequence[Sequence[Any]],
        removed: Sequence[tuple[int, str | None, str | None]],
        rev: int,
    ) -> None:
        """Apply the changes after ``self.rev``: ``rows`` (``SNAP_COLS``, each the row's
        latest version) and ``removed`` tombstones ``(rev, kind, id)``, in revision order
        (at one revision the removals first: a row present at its end was written last),
        then move to ``rev``."""
        events: list[tuple[int, int, Sequence[Any]]] = [(t[0], 0, t) for t in removed]
        events += [(int(row[8]), 1, row) for row in rows]
        events.sort(key=lambda event: (event[0], event[1]))
        for _, what, item in events:
            if what == 0:
                _, kind, entry_id = item
                if entry_id is None:
                    if kind in (None, self.kind):
                        self.conflict = None
                        self.dim = self.embedder = None
                        self._reset()
                elif kind == self.kind and entry_id in self.index:
                    self._remove(self.index[entry_id])
            else:
                blob = item[5]
                vector = None if blob is None else np.frombuffer(bytes(blob), dtype="<f4")
                self._put(item[0], item[1], item[2], item[3], item[4], vector, item[7])
        self.rev = rev
        self.compact()

    def copy(self, *, keep_entries: bool = True) -> Snapshot:
        """An independent copy (for an overlay of buffered ops)."""
        other = Snapshot(self.namespace, self.kind, keep_entries=keep_entries)
        other.embedder, other.dim, other.conflict = self.embedder, self.dim, self.conflict
        other.rev = self.rev
        other.n, other.dead = self.n, self.dead
        other.ids = list(self.ids)
        other.index = dict(self.index)
        other.key_to_id = dict(self.key_to_id)
        other.id_to_key = dict(self.id_to_key)
        other.alive = self.alive.copy()
        other.ts = self.ts.copy()
        other.seq = self.seq.copy()
        other.imp = self.imp.copy()
        other.norm = self.norm.copy()
        other.emb = None if self.emb is None else self.emb.copy()
        other.entries = dict(self.entries)
        return other

    # -- applying ops --------------------------------------------------------------------

    def touches(self, op: MemoryOp) -> bool:
        """Whether applying ``op`` can change this snapshot."""
        if isinstance(op, UpsertOp):
            entry = op.entry
            mine = entry.namespace == self.namespace and entry.kind == self.kind
            return mine or entry.id in self.index
        if isinstance(op, (DeleteOp, ClearOp)):
            return op.namespace == self.namespace and getattr(op, "kind", None) in (
                None,
                self.kind,
            )
        return op.namespace == self.namespace and op.kind == self.kind

    def first_touch(self, ops: Sequence[MemoryOp]) -> int | None:
        """Index of the first op that can change this snapshot, or ``None``."""
        for i, op in enumerate(ops):
            if self.touches(op):
                return i
        return None

    def apply_relevant(self, ops: Sequence[MemoryOp]) -> bool:
        """Apply ``ops`` from the first one that touches this snapshot; False if none does.

        Ops before it cannot matter; every op after it is applied, because an earlier op may
        have brought in an id that a later op (e.g. an upsert elsewhere) moves out again.
        """
        first = self.first_touch(ops)
        if first is None:
            return False
        self.apply_all(ops[first:])
        return True

    def apply(self, op: MemoryOp) -> None:
        """Apply one op exactly as :func:`apply_ops` does in SQL."""
        if isinstance(op, UpsertOp):
            self._upsert(op)
        elif isinstance(op, DeleteOp):
            if op.namespace == self.namespace:
                for entry_id in op.ids:
                    if entry_id in self.index:
                        self._remove(self.index[entry_id])
        elif isinstance(op, ClearOp):
            if op.namespace == self.namespace and op.kind in (None, self.kind):
                self.conflict = None
                self.dim = self.embedder = None
                self._reset()
        elif op.namespace == self.namespace and op.kind == self.kind:
            self._trim(op.capacity)

    def apply_all(self, ops: Iterable[MemoryOp]) -> None:
        """Apply ops in order."""
        for op in ops:
            self.apply(op)

    def _upsert(self, op: UpsertOp) -> None:
        entry = op.entry
        if entry.namespace != self.namespace or entry.kind != self.kind:
            # An upsert by id moves a row that had this id out of this snapshot.
            if entry.id in self.index:
                self._remove(self.index[entry.id])
            return
        self._put(
            entry.id,
            entry.key,
            entry.timestamp,
            entry.importance,
            op.seq,
            op.vector(),
            op.embedder,
        )
        if self.keep_entries:
            self.entries[entry.id] = entry

    def _put(
        self,
        entry_id: str,
        key: str | None,
        ts: float,
        imp: float,
        seq: int,
        vector: np.ndarray | None,
        embedder: str | None,
    ) -> None:
        """Insert or replace one live entry of this (namespace, kind)."""
        if key is not None:
            holder = self.key_to_id.get(key)
            if holder is not None and holder != entry_id:
                self._remove(self.index[holder])  # the unique (namespace, kind, key) index
        if entry_id in self.index:
            i = self.index[entry_id]
            old_key = self.id_to_key.pop(entry_id, None)
            if old_key is not None:
                self.key_to_id.pop(old_key, None)
            self.entries.pop(entry_id, None)
        else:
            i = self._append(entry_id)
        if key is not None:
            self.key_to_id[key] = entry_id
            self.id_to_key[entry_id] = key
        self.alive[i] = True
        self.ts[i] = ts
        self.seq[i] = seq
        self.imp[i] = imp
        self._set_vector(i, vector, embedder)

    def _set_vector(self, i: int, vector: np.ndarray | None, embedder: str | None) -> None:
        if vector is None:
            if self.emb is not None:
                self.emb[i] = 0.0
            self.norm[i] = 0.0
            return
        if self.dim is None:
            self.dim, self.embedder = len(vector), embedder
            self.emb = np.zeros((len(self.alive), self.dim), dtype=np.float32)
        if (embedder, len(vector)) != (self.embedder, self.dim):
            self.conflict = (embedder, len(vector))
            assert self.emb is not None
            self.emb[i] = 0.0
            self.norm[i] = 0.0
            return
        assert self.emb is not None
        self.emb[i] = vector
        self.norm[i] = float(np.linalg.norm(vector))

    def _append(self, entry_id: str) -> int:
        if self.n == len(self.alive):
            self._grow(max(16, 2 * self.n))
        i = self.n
        self.n += 1
        self.ids.append(entry_id)
        self.index[entry_id] = i
        return i

    def _grow(self, capacity: int) -> None:
        def grown(array: np.ndarray) -> np.ndarray:
            out = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
            out[: len(array)] = array
            return out

        self.alive = grown(self.alive)
        self.ts = grown(self.ts)
        self.seq = grown(self.seq)
        self.imp = grown(self.imp)
        self.norm = grown(self.norm)
        if self.emb is not None:
            self.emb = grown(self.emb)

    def _remove(self, i: int) -> None:
        entry_id = self.ids[i]
        self.alive[i] = False
        del self.index[entry_id]
        key = self.id_to_key.pop(entry_id, None)
        if key is not None:
            self.key_to_id.pop(key, None)
        self.entries.pop(entry_id, None)
        self.dead += 1

    def _trim(self, capacity: int) -> None:
        live = self.live()
        if len(live) <= capacity:
            return
        # Same order as KEEP_ORDER_SQL: importance, timestamp, seq, id, all descending.
        ranked = sorted(
            live.tolist(),
            key=lambda i: (self.imp[i], self.ts[i], self.seq[i], self.ids[i]),
            reverse=True,
        )
        for i in ranked[capacity:]:
            self._remove(i)

    def compact(self) -> None:
        """Drop the slots of removed entries once they are a large share of the arrays."""
        if self.dead <= 64 or self.dead * 2 <= self.n:
            return
        live = self.live()
        ids = [self.ids[i] for i in live]
        emb = None if self.emb is None else self.emb[live]
        ts, seq, imp, norm = self.ts[live], self.seq[live], self.imp[live], self.norm[live]
        entries, key_to_id, id_to_key = self.entries, self.key_to_id, self.id_to_key
        self._reset(max(16, len(live)))
        self.entries, self.key_to_id, self.id_to_key = entries, key_to_id, id_to_key
        n = len(live)
        self.n = n
        self.ids = ids
        self.index = {entry_id: i for i, entry_id in enumerate(ids)}
        self.alive[:n] = True
        self.ts[:n], self.seq[:n], self.imp[:n], self.norm[:n] = ts, seq, imp, norm
        if emb is not None and self.emb is not None:
            self.emb[:n] = emb

    # -- reading -------------------------------------------------------------------------

    def live(self) -> np.ndarray:
        """Slot indices of the live entries, in slot order."""
        return np.flatnonzero(self.alive[: self.n])

    def __len__(self) -> int:
        return self.n - self.dead

    def max_seq(self) -> int:
        """The largest ``seq`` of a live entry, or 0 when empty."""
        live = self.live()
        return int(self.seq[live].max()) if len(live) else 0

    def check_embedder(self, name: str, dim: int, *, memory: str) -> None:
        """Refuse to rank rows embedded by another embedder (they would rank as noise)."""
        stored = self.conflict or ((self.embedder, self.dim) if self.dim is not None else None)
        if stored is not None and stored != (name, dim):
            raise MemoryConfigError(
                f"{memory} holds embeddings made by {stored[0]!r} (dim {stored[1]}) but "
                f"this memory embeds with {name!r} (dim {dim}): pass the same embedder that "
                "wrote them, or clear() the memory, or use another namespace",
                code="FSM102",
            )

    def cosine(self, live: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of each live slot's embedding with ``query`` (0 where undefined)."""
        if self.emb is None or not len(live):
            return np.zeros(len(live), dtype=np.float64)
        qnorm = float(np.linalg.norm(query))
        if qnorm == 0.0:
            return np.zeros(len(live), dtype=np.float64)
        # Every slot live (the common case): a view, not a copy of the whole matrix.
        rows = self.emb[: self.n] if len(live) == self.n else self.emb[live]
        # einsum rather than `@`: a float32 matrix-vector product goes to BLAS gemv, whose
        # threads spin when the cores are busy (measured 10-20 ms instead of 0.15 ms for
        # 2,000 x 256 on a loaded 2-core machine); einsum's own loop is steady and as fast.
        dots = np.einsum("ij,j->i", rows, (query / qnorm).astype(np.float32))
        norms = self.norm[live]
        out = np.zeros(len(live), dtype=np.float64)
        np.divide(dots, norms, out=out, where=norms > 0)
        return np.clip(out, -1.0, 1.0)

    def top(self, live: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best (slot, score) by score, ties broken by recency (timestamp, seq).

        Returns slot indices and their scores, best first.
        """
        if k <= 0 or not len(live):
            return live[:0], scores[:0]
        if k < len(live):
            # Keep every candidate tied with the k-th best so the tie-break sees them all.
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = np.flatnonzero(scores >= kth)
            live, scores = live[keep], scores[keep]
        order = np.lexsort((-self.seq[live], -self.ts[live], -scores))[:k]
        return live[order], scores[order]

    def recent(self, live: np.ndarray) -> np.ndarray:
        """Live slots ordered newest first (timestamp, then seq)."""
        return live[np.lexsort((-self.seq[live], -self.ts[live]))]
