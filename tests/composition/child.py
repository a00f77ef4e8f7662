"""Child process for composition crash tests: python child.py KIND DB RUN CALLS [ARG]."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.composition.graphs import map_reduce, nested


def main() -> None:
    kind, db, run, calls = sys.argv[1:5]
    if kind == "map":
        app = map_reduce(calls, delay=float(sys.argv[5])).compile(store=db)
        inp = {"items": list(range(100))}
    else:
        app = nested(3, calls, crash_file=sys.argv[5]).compile(store=db)
        inp = {}
    if app.store.find_run(run) is None:
        r = app.run_sync(inp, run_id=run)
    else:
        r = app.resume_sync(run)
    print(r.status, r.state.model_dump_json())


if __name__ == "__main__":
    main()
