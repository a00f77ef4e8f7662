"""A graph whose middle node waits for a gate file, so a test can watch a run that is
executing in another process (``python -m tests.fleet_core.gated DB RUN_ID GATE``)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, append


class Gated(BaseModel):
    gate: str = ""
    log: Annotated[list[str], append] = []


def before(s: Gated) -> dict:
    return {"log": "before"}


async def wait_gate(s: Gated) -> dict:
    while not os.path.exists(s.gate):
        await asyncio.sleep(0.05)
    return {"log": "gate"}


def after(s: Gated) -> dict:
    return {"log": "after"}


def builder() -> GraphBuilder[Gated]:
    g = GraphBuilder(Gated, name="gated")
    g.add_node(before).add_node(wait_gate).add_node(after)
    g.add_edge(START, "before").add_edge("before", "wait_gate")
    g.add_edge("wait_gate", "after").add_edge("after", END)
    return g


REGISTRY = [builder().compile()]

if __name__ == "__main__":
    from flowstate.checkpoints import open_store

    db, run_id, gate = sys.argv[1:4]
    app = builder().compile(store=open_store(db))
    result = app.run_sync({"gate": gate}, run_id=run_id)
    print(result.status, flush=True)
