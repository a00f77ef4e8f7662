"""Child for test_postgres_leases.py: the ownership child of tests/lifecycle on Postgres.

    python tests/store/_pg_owner_child.py DSN SCHEMA CALLS RUN MODE [TTL]

MODE ``run`` starts the slow chain of tests/lifecycle/owner_graphs.py as run RUN, ``resume``
resumes it; the store is a ``PostgresStore(DSN, schema=SCHEMA)`` opened in this process,
its session's ``application_name`` ``fs_owner_<pid>``.
Prints the outcome as one JSON line; exits 4 on ``RunOwned``, 5 on ``LeaseLost``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from psycopg.conninfo import make_conninfo

from flowstate.checkpoints._postgres import PostgresStore
from flowstate.errors import LeaseLost, RunOwned
from tests.lifecycle.owner_graphs import slow_chain


def main() -> None:
    dsn, schema, calls, run, mode = sys.argv[1:6]
    ttl = float(sys.argv[6]) if len(sys.argv) > 6 else 30.0
    # named after this process, so the test can see its session in pg_stat_activity
    store = PostgresStore(
        make_conninfo(dsn, application_name=f"fs_owner_{os.getpid()}"), schema=schema
    )
    app = slow_chain(Path(calls)).compile(store=store, lease_ttl=ttl)
    try:
        if mode == "run":
            r = app.run_sync({}, run_id=run)
        else:
            r = app.resume_sync(run)
        print(json.dumps({"outcome": r.status, "n": r.state.n}), flush=True)
    except RunOwned as e:
        print(json.dumps({"outcome": "owned", "owner": e.owner}), flush=True)
        sys.exit(4)
    except LeaseLost as e:
        print(json.dumps({"outcome": "lease_lost", "msg": str(e)}), flush=True)
        sys.exit(5)
    finally:
        store.close()


if __name__ == "__main__":
    main()
