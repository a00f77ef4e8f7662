"""Named crash points for the deterministic crash sweep (RELIABILITY.md R1).

With ``FLOWSTATE_CRASH_AT=k`` in the environment, the k-th crash point reached by the
process kills it with SIGKILL, exactly as a power cut or OOM kill would. Without it a
crash point costs one global lookup.
"""

from __future__ import annotations

import os
import signal

_TARGET = int(os.environ.get("FLOWSTATE_CRASH_AT", "0") or 0)
_count = 0
reached: list[str] = []


def crash_point(name: str) -> None:
    global _count
    if not _TARGET:
        return
    _count += 1
    reached.append(name)
    if _count == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
