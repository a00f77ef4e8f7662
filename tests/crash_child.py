"""Runs or resumes one run of a reference graph; used by the kill -9 tests.

python tests/crash_child.py DB GRAPH RUN_ID SINK [DELAY]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from refgraphs import GRAPHS


def main() -> None:
    db, graph, run_id, sink = sys.argv[1:5]
    delay = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    app = GRAPHS[graph](sink, delay).compile(store=db)
    if app.store.find_run(run_id) is None:
        r = app.run_sync({}, run_id=run_id)
    else:
        r = app.resume_sync(run_id)
    print(r.status)


if __name__ == "__main__":
    main()
