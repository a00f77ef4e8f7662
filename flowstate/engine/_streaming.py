"""Choosing what a stream carries: ``stream(..., mode=...)`` and ``Subscription``.

LangGraph's ``stream_mode`` in flowstate's terms. The engine's events are the typed models
of ``flowstate.events``; a mode selects some of them:

- ``"events"``: every event (the default when no mode is given);
- ``"values"``: ``step_finished`` with its ``state`` filled: the state after each step;
- ``"updates"``: ``node_finished``, each activation's update as committed;
- ``"tokens"``: ``token``, the text of LLM calls as it streams (LangGraph's "messages").

``run_started`` and ``run_finished`` always come, so a consumer knows where a run begins
and how it ends. Only ``"values"`` costs anything: the state is serialised once per step,
and only for a subscription that asks for it (the engine checks one flag per step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args

from flowstate.errors import ConfigError

__all__ = ["STREAM_MODES", "StreamMode", "Subscription", "stream_kinds"]

StreamMode = Literal["events", "values", "updates", "tokens"]
"""What a stream carries (see the module docstring)."""

STREAM_MODES: tuple[str, ...] = get_args(StreamMode)

_KINDS: dict[str, frozenset[str] | None] = {
    "events": None,  # everything
    "values": frozenset({"step_finished"}),
    "updates": frozenset({"node_finished"}),
    "tokens": frozenset({"token"}),
}
_ALWAYS = frozenset({"run_started", "run_finished"})


def stream_kinds(mode: str | Iterable[str]) -> frozenset[str] | None:
    """The event kinds ``mode`` selects (None: every kind); ``ConfigError`` naming an
    unknown mode and the modes there are."""
    modes = [mode] if isinstance(mode, str) else list(mode)
    kinds: set[str] = set(_ALWAYS)
    for m in modes:
        if m not in _KINDS:
            raise ConfigError(
                f"stream mode {m!r} is not one of {list(STREAM_MODES)}: pass one of them "
                "or a list of them"
            )
        selected = _KINDS[m]
        if selected is None:
            return None
        kinds |= selected
    return frozenset(kinds)


class Subscription:
    """An ``on_event`` callback that receives the events ``mode`` selects; with
    ``"values"`` in it, the engine fills ``step_finished.state`` for it. Pass it as
    ``on_event`` to ``run``/``resume``/``fork`` (``stream(mode=...)`` makes one)."""

    def __init__(
        self, callback: Callable[[Any], None], mode: StreamMode | Iterable[StreamMode]
    ) -> None:
        self.callback = callback
        self.kinds = stream_kinds(mode)
        """The kinds passed on (None: all)."""
        modes = [mode] if isinstance(mode, str) else list(mode)
        self.values = "values" in modes
        """Whether the engine serialises the state into each ``step_finished``."""

    def __call__(self, event: Any) -> None:
        if self.kinds is None or event.kind in self.kinds:
            self.callback(event)
