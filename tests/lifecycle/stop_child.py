"""Child for the stopped-owner trials: python stop_child.py DB RUN ROLE MODE

ROLE ``first`` starts the run: its node writes ``DB.mid`` (it is mid-node now) and
sleeps, so the parent can SIGSTOP it there; ROLE ``second`` resumes the run (waiting
for the stopped owner's lease to expire). After the sleep the node acts according to
MODE, leaving a ``late-ROLE-PID`` tag in what it stores: ``write`` (its update),
``effect`` (a journaled effect), ``fail`` (its first attempt raises: an attempts row),
``interrupt`` (an interrupt payload). Prints the outcome as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowstate import END, START, GraphBuilder, RetryPolicy
from flowstate.engine import NodeContext
from flowstate.errors import LeaseLost, RunOwned


class S(BaseModel):
    tag: str = ""


def main() -> None:
    db, run, role, mode = sys.argv[1:5]

    def work(s: S, ctx: NodeContext) -> dict:
        if role == "first":
            Path(db + ".mid").write_text(str(os.getpid()))
            time.sleep(2.0)  # SIGSTOPped in here
        tag = f"late-{role}-{os.getpid()}"
        if role == "first":
            Path(db + ".acted").write_text(tag)  # it goes on after the takeover
        if mode == "effect":
            ctx.effect("late", lambda t: t, tag)
        elif mode == "fail" and ctx.attempt == 1:
            raise ConnectionError(tag)  # retryable: an attempts row, then attempt 2
        elif mode == "interrupt":
            ctx.interrupt({"tag": tag})
        return {"tag": tag}

    g = GraphBuilder(S, name="stopped")
    g.add_node(work, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    g.add_edge(START, "work").add_edge("work", END)
    app = g.compile(store=db, lease_ttl=1.0)
    try:
        if role == "first":
            r = app.run_sync({}, run_id=run)
        else:
            r = app.resume_sync(run, wait=30)
        print(json.dumps({"outcome": r.status}), flush=True)
    except (LeaseLost, RunOwned) as e:
        print(json.dumps({"outcome": type(e).__name__}), flush=True)


if __name__ == "__main__":
    main()
