"""Large effect results on PostgreSQL stored once by content hash, as ``SQLiteStore``
does (``m003_blobs``): an effect result of at least ``BLOB_MIN_BYTES`` goes into
``blobs`` keyed by its sha256, and the effect row holds ``@blob:<sha256>``. Forks that
re-use a journaled answer, retries and replays then share one copy. Reads resolve the
reference and check the blob's hash (a missing or altered blob is a ``CorruptRowError``);
deleting the last run that refers to a blob deletes it."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from flowstate.errors import CorruptRowError

from ._records import EffectRecord
from ._sqlite_maint import BLOB_MIN_BYTES, BLOB_PREFIX

__all__ = ["PostgresBlobs"]


class PostgresBlobs:
    """Mixin of ``PostgresStore``: uses its ``_q`` and ``_read``."""

    _q: Any
    _read: Any

    def _stored_effect(self, c: psycopg.Connection[Any], e: EffectRecord) -> EffectRecord:
        if len(e.response) < BLOB_MIN_BYTES:
            return e
        digest = hashlib.sha256(e.response.encode()).hexdigest()
        c.execute(
            self._q('INSERT INTO {blobs} ("hash", "data") VALUES (%s, %s) ON CONFLICT DO NOTHING'),
            [digest, e.response],
        )
        return e.model_copy(update={"response": BLOB_PREFIX + digest})

    def _unblob(self, e: EffectRecord) -> EffectRecord:
        if not e.response.startswith(BLOB_PREFIX):
            return e
        digest = e.response[len(BLOB_PREFIX) :]
        rows = self._read(self._q('SELECT "data" FROM {blobs} WHERE "hash" = %s'), [digest])
        if not rows:
            raise CorruptRowError("blobs", e.run_id, e.step, f"blob {digest[:12]}… is missing")
        data = str(rows[0][0])
        if hashlib.sha256(data.encode()).hexdigest() != digest:
            raise CorruptRowError("blobs", e.run_id, e.step, f"blob {digest[:12]}… fails its hash")
        return e.model_copy(update={"response": data})

    def _drop_orphan_blobs(self, c: psycopg.Connection[Any]) -> None:
        """Inside a deleting transaction: the blobs no effect refers to any more."""
        c.execute(
            self._q(
                "DELETE FROM {blobs} b WHERE NOT EXISTS (SELECT 1 FROM {effects} e WHERE "
                'e."response" = %s || b."hash")'
            ),
            [BLOB_PREFIX],
        )
