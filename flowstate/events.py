"""The typed events a run emits (``app.stream``, ``on_event=``, the service's SSE).

Each is a pydantic model with a ``kind`` discriminator; ``EventAdapter`` parses any of them
from JSON.
"""

from flowstate.engine._events import (
    EffectRecorded,
    Event,
    EventAdapter,
    NodeFailed_,
    NodeFinished,
    NodeRetrying,
    NodeStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    Token,
)

NodeFailedEvent = NodeFailed_

__all__ = [
    "EffectRecorded",
    "Event",
    "EventAdapter",
    "NodeFailedEvent",
    "NodeFinished",
    "NodeRetrying",
    "NodeStarted",
    "RunFinished",
    "RunStarted",
    "StepFinished",
    "Token",
]
