"""``PostgresStore``'s maintenance: integrity check of every row, sizes, child runs
and deletion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from pydantic import ValidationError

from flowstate.errors import CorruptRowError, StoreIOError

from ._common import (
    PER_RUN_TABLES,
    TABLE_MODELS,
    attempt_from_row,
    children_range,
    direct_children,
    migrated_rows,
)
from ._postgres_schema import MIGRATIONS

__all__ = ["PostgresMaintenance"]


class PostgresMaintenance:
    """Mixin of ``PostgresStore``: uses its ``schema``, ``_t``, ``_borrow``,
    ``_q``, ``_columns``, ``_decode``, ``_read`` and ``write``."""

    schema: str
    _t: dict[str, sql.Identifier]
    _borrow: Any
    _q: Any
    _columns: Any
    _decode: Any
    _read: Any
    write: Any
    cipher: Any
    _fence: Any
    _unblob: Any
    _drop_orphan_blobs: Any
    get_run: Any
    steps: Any
    writes: Any

    def integrity_check(self) -> str:
        """``"ok"``, the problems found joined by ``"; "``, or ``"error: <message>"`` when
        the check cannot run (server unreachable, schema missing).

        PostgreSQL checks its own pages (enable ``initdb --data-checksums``); this checks
        what is flowstate's: every migration is applied, and every row of every table
        passes its integrity hash and validates into its record. It reads every row.
        """
        problems: list[str] = []
        limit = 50
        try:
            with self._borrow() as c:
                done = {str(r[0]) for r in c.execute(self._q('SELECT "name" FROM {migrations}'))}
                missing = [m for m in MIGRATIONS if m not in done]
                unknown = sorted(done - set(MIGRATIONS))
                if missing:
                    problems.append(f"migrations not applied: {', '.join(missing)}")
                if unknown:
                    problems.append(f"unknown migrations: {', '.join(unknown)}")
                for table in TABLE_MODELS:
                    q = sql.SQL("SELECT {} FROM {}").format(self._columns(table), self._t[table])
                    with c.cursor() as cur:
                        for row in cur.stream(q):
                            if len(problems) >= limit:
                                continue  # drain the stream; the report is full
                            try:
                                self._decode(table, row)
                            except CorruptRowError as e:
                                problems.append(e.message)
                problems.extend(p for p in self._attempt_problems(c) if len(problems) < limit)
                problems.extend(p for p in self._blob_problems(c) if len(problems) < limit)
        except (psycopg.Error, StoreIOError) as e:
            return f"error: {e}"
        return "; ".join(problems) if problems else "ok"

    def _blob_problems(self, c: psycopg.Connection[Any]) -> list[str]:
        """Effects whose ``@blob:`` reference is missing or fails its hash."""
        rows = c.execute(
            self._q(
                'SELECT e."run_id", e."step", substr(e."response", 7), b."hash" IS NULL '
                'FROM {effects} e LEFT JOIN {blobs} b ON b."hash" = substr(e."response", 7) '
                'WHERE left(e."response", 6) = \'@blob:\' AND (b."hash" IS NULL OR '
                "encode(sha256(convert_to(b.\"data\", 'UTF8')), 'hex') <> b.\"hash\") "
                "LIMIT 50"
            )
        ).fetchall()
        return [
            CorruptRowError(
                "blobs",
                str(r[0]),
                int(r[1]),
                f"blob {str(r[2])[:12]}… {'is missing' if r[3] else 'fails its hash'}",
            ).message
            for r in rows
        ]

    def _attempt_problems(self, c: psycopg.Connection[Any]) -> list[str]:
        out = []
        q = self._q(
            'SELECT "run_id", "step", "task_path", "attempt", "error", "created_at" FROM {attempts}'
        )
        with c.cursor() as cur:
            for r in cur.stream(q):
                try:
                    attempt_from_row(r)
                except ValidationError as e:
                    out.append(f"invalid row in table 'attempts' for run {r[0]}: {e}")
        return out

    def table_sizes(self) -> dict[str, int]:
        """Row count of every table in the store's schema (migrations bookkeeping
        included)."""
        names = [
            str(r[0])
            for r in self._read(
                "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = %s "
                'ORDER BY tablename COLLATE "C"',
                [self.schema],
            )
        ]
        sizes: dict[str, int] = {}
        for name in names:
            q = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.schema, name))
            sizes[name] = int(self._read(q)[0][0])
        return sizes

    def largest_runs(self, limit: int = 10) -> list[tuple[str, int]]:
        """The ``limit`` runs with the most payload bytes, largest first, as
        ``(run id, bytes)``: the JSON of their writes (update, goto, usage), steps
        (tasks, joins, snapshot) and effects (request, response). Child runs of
        subgraph activations count on their own."""
        rows = self._read(
            self._q(
                """
                SELECT "run_id", sum(n) AS total FROM (
                    SELECT "run_id", coalesce(octet_length("update"), 0)
                        + coalesce(octet_length("goto"), 0)
                        + coalesce(octet_length("usage"), 0) AS n FROM {writes}
                    UNION ALL
                    SELECT "run_id", coalesce(octet_length("tasks"), 0)
                        + coalesce(octet_length("joins"), 0)
                        + coalesce(octet_length("snapshot"), 0) FROM {steps}
                    UNION ALL
                    SELECT "run_id", coalesce(octet_length("request"), 0)
                        + coalesce(octet_length("response"), 0) FROM {effects}
                ) AS payloads
                GROUP BY "run_id" ORDER BY total DESC, "run_id" LIMIT %s
                """
            ),
            [int(limit)],
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    def child_run_ids(self, run_id: str) -> list[str]:
        """Ids of the direct child runs of ``run_id``'s subgraph activations, i.e. the
        runs with id ``run_id/<step>/<task_path>``, in id order.

        Only ids are read: a damaged row of some other run (a fork, a grandchild) cannot
        make this fail, unlike ``list_runs(parent_id=...)`` which decodes every row.
        """
        prefix, hi = children_range(run_id)
        rows = self._read(
            self._q(
                'SELECT "id" FROM {runs} WHERE "id" >= %s AND "id" < %s '
                'AND left("id", length(%s::text) + 1) = %s::text || \'/\' ORDER BY "id"'
            ),
            [prefix, hi, run_id, run_id],
        )
        return direct_children(prefix, [r[0] for r in rows])

    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything hanging off it, child runs included.

        A child run's id is its parent's id, ``/`` and more: matched by exact prefix
        comparison (no ``LIKE``, so no wildcard, escape or case folding). The byte range
        ``[run_id/, run_id0)`` (``'0'`` follows ``'/'``; the id columns are ``COLLATE
        "C"``) holds exactly those ids and lets the primary-key indexes serve the scan.
        """
        lo, hi = children_range(run_id)
        with self.write() as c:
            for table, col in PER_RUN_TABLES:
                c.execute(
                    sql.SQL(
                        "DELETE FROM {t} WHERE {c} = %s OR ({c} >= %s AND {c} < %s "
                        "AND left({c}, length(%s::text) + 1) = %s::text || '/')"
                    ).format(t=self._t[table], c=sql.Identifier(col)),
                    [run_id, lo, hi, run_id, run_id],
                )
            self._drop_orphan_blobs(c)

    def migrate_run(
        self,
        run_id: str,
        *,
        state: Callable[[str], str],
        update: Callable[[str], str],
        fingerprint: str,
        graph_doc: str,
    ) -> None:
        """Rewrite a run's stored JSON to a new state-schema version, in one transaction
        (the rows and hashes are ``_common.migrated_rows``, as in ``SQLiteStore``)."""
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
                self._q(
                    'UPDATE {runs} SET "input" = %s, "fingerprint" = %s, "graph_doc" = %s, '
                    '"hash" = %s WHERE "id" = %s'
                ),
                [*run_vals, run_id],
            )
            for st, h in steps:
                c.execute(
                    self._q(
                        'UPDATE {steps} SET "snapshot" = %s, "tasks" = %s, "hash" = %s '
                        'WHERE "run_id" = %s AND "step" = %s'
                    ),
                    [st.snapshot, st.tasks, h, run_id, st.step],
                )
            for w, h in writes:
                c.execute(
                    self._q(
                        'UPDATE {writes} SET "update" = %s, "goto" = %s, "hash" = %s '
                        'WHERE "run_id" = %s AND "step" = %s AND "task_path" = %s'
                    ),
                    [w.update, w.goto, h, run_id, w.step, w.task_path],
                )

    def shrink_wal(self) -> None:
        """Nothing to do: PostgreSQL manages its own write-ahead log."""
