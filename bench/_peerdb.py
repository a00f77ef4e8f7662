"""Postgres and DBOS plumbing for the benchmark (W1, W4): where the Postgres rows go, and
running DBOS in a child process of its own.

DBOS keeps global state (one ``DBOS`` instance per process, a registry of decorated
functions, background threads, a thread pool, a logger), so each DBOS measurement runs in a
fresh ``python <workload>.py --dbos-child …`` process whose set-up (``DBOS(config=…)``,
``DBOS.launch()``, creating its system database) happens there, outside its timers, as
the other engines' set-up happens outside theirs. The child prints one JSON line.

Postgres: ``FLOWSTATE_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
flowstate gets a fresh schema of that database per measurement; DBOS gets a fresh schema
(``dbos_system_schema``) of its own database ``bench_dbos`` on the same server (DBOS
creates it if missing). Both are dropped afterwards. Without a reachable server (or
without ``psycopg-pool``, flowstate's ``postgres`` extra, in the benchmark's venv) the
Postgres rows are left out.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

PG_DSN = os.environ.get("FLOWSTATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
DBOS_DB = "bench_dbos"
_available: bool | None = None


def pg_available() -> bool:
    """Whether the benchmark's Postgres server answers (checked once per process)."""
    global _available
    if _available is None:
        try:
            import psycopg
            import psycopg_pool  # noqa: F401  (flowstate's PostgresStore needs it)

            with psycopg.connect(PG_DSN, connect_timeout=3):
                _available = True
        except Exception:
            _available = False
    return _available


def _dsn_with_db(dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(PG_DSN)
    params["dbname"] = dbname
    return make_conninfo(**params)


def dbos_pg_url() -> str:
    """The SQLAlchemy URL of DBOS's own database on the benchmark server."""
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(PG_DSN)
    user = p.get("user", "postgres")
    pw = f":{p['password']}" if p.get("password") else ""
    return f"postgresql://{user}{pw}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{DBOS_DB}"


@contextlib.contextmanager
def pg_schema(prefix: str, dbname: str | None = None) -> Iterator[str]:
    """A fresh schema name, dropped (with everything in it) on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        import psycopg

        dsn = PG_DSN if dbname is None else _dsn_with_db(dbname)
        with contextlib.suppress(psycopg.Error), psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def dbos_config(name: str, url: str, schema: str | None) -> dict[str, Any]:
    conf: dict[str, Any] = {"name": name, "system_database_url": url, "log_level": "ERROR"}
    if schema is not None:
        conf["dbos_system_schema"] = schema
    return conf


def in_child(script: str, *args: object) -> dict[str, Any]:
    """Run ``python <script> --dbos-child <args>`` and return the JSON of its last line."""
    proc = subprocess.run(
        [sys.executable, script, "--dbos-child", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"DBOS child {script} {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return dict(json.loads(lines[-1]))


def dbos_backends(folder: str) -> Iterator[tuple[str, str, str | None]]:
    """``(label, system_database_url, schema)`` for SQLite (DBOS's default, a file in
    ``folder``) and, when the server answers, Postgres."""
    yield "sqlite", f"sqlite:///{folder}/dbos.sqlite", None
    if pg_available():
        with pg_schema("dbos", DBOS_DB) as schema:
            yield "pg", dbos_pg_url(), schema
