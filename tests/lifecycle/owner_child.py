"""Child for ownership tests: python owner_child.py DB RUN MODE [TTL]

MODE run: start the slow graph; resume: resume it; prints the outcome as one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowstate.errors import LeaseLost, RunOwned
from tests.lifecycle.owner_graphs import slow_chain


def main() -> None:
    db, run, mode = sys.argv[1:4]
    ttl = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    app = slow_chain(Path(db).with_suffix(".calls")).compile(store=db, lease_ttl=ttl)
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


if __name__ == "__main__":
    main()
