"""Test hooks: named crash points for the deterministic crash sweep (RELIABILITY.md R1)
and observers of live effects.

With ``FLOWSTATE_CRASH_AT=k`` in the environment, the k-th crash point reached by the
process kills it with SIGKILL, exactly as a power cut or OOM kill would. Tests can also
install a hook (``set_hook``) that is called at every point, to sweep in-process. Without
either, a crash point costs one global lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

_TARGET = int(os.environ.get("FLOWSTATE_CRASH_AT", "0") or 0)
_count = 0
_hook: Callable[[str], None] | None = None

POINTS = (
    "store.before_begin",
    "store.before_commit",
    "store.after_commit",
    "effect.before_call",
    "effect.after_call",
)
"""Every instrumented point, for documentation and sweep coverage checks."""


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Call ``hook(name)`` at every crash point (tests); ``None`` removes it."""
    global _hook
    _hook = hook


_quiet = threading.local()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No crash point in the block (on this thread): for writes that are not checkpoint
    commits (the events of a run), which a crash sweep must neither count nor stop in."""
    depth = getattr(_quiet, "depth", 0)
    _quiet.depth = depth + 1
    try:
        yield
    finally:
        _quiet.depth = depth


def crash_point(name: str) -> None:
    global _count
    if getattr(_quiet, "depth", 0):
        return
    if _hook is not None:
        _hook(name)
    if not _TARGET:
        return
    _count += 1
    if _count == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)


effect_observers: list[Callable[[str, int, str, int, str], None]] = []
"""Called with (run_id, step, task_path, seq, name) each time an effect is performed live
(not served from the journal). Used by flowstate.testing to prove nothing ran twice."""
