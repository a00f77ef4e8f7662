"""Child for step-close recovery: python close_child.py DIR RUN [--rerun-step]."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.lifecycle.close_graphs import make


def main() -> None:
    d, run = Path(sys.argv[1]), sys.argv[2]
    app = make(d).compile(store=str(d / "runs.db"))
    r = app.resume_sync(run, rerun_step="--rerun-step" in sys.argv)
    print(json.dumps({"outcome": r.status}), flush=True)


if __name__ == "__main__":
    main()
