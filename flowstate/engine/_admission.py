"""Admission: what a new run is before it executes — its input checked against the state
model, and the run and step-0 rows that store it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from flowstate.checkpoints import (
    RunRecord,
    StepRecord,
)
from flowstate.errors import (
    InputRejected,
    PayloadTooLarge,
)

from ._plan import start_tasks
from ._point import RunConfig

if TYPE_CHECKING:
    from ._app_core import GraphCore

__all__ = ["Admitted", "new_run", "unknown_fields"]


def unknown_fields(model: type[BaseModel], input: Any) -> list[str]:
    """Keys of a mapping input that name no field (nor alias) of ``model``: pydantic would
    drop them silently, so a typo would go unnoticed. A model that allows extra fields
    takes them."""
    if not isinstance(input, Mapping) or model.model_config.get("extra") == "allow":
        return []
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    return [str(k) for k in input if k not in names]


class Admitted(Exception):
    """How the span of an admitted run ends: the run was stored, not executed."""


def new_run(
    graph: GraphCore[Any],
    input: BaseModel | dict[str, Any],
    *,
    run_id: str | None,
    config: RunConfig,
    parent: str | None = None,
    parent_step: int | None = None,
) -> tuple[RunRecord, StepRecord, BaseModel]:
    """The run row and step-0 row of a new run of ``graph`` from ``input`` (validated whole,
    unknown fields refused, within ``max_state_bytes``), and the input state."""
    schema = graph.ir.schema
    unknown = unknown_fields(schema.model, input)
    if unknown:
        known = ", ".join(schema.model.model_fields)
        raise InputRejected(
            f"the input has field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}, which {schema.name} does not have "
            f"(its fields: {known}); fix the name or add the field to the state; no run "
            "was created"
        )
    try:
        state = input if isinstance(input, schema.model) else schema.model.model_validate(input)
    except ValidationError as e:
        from ._state import describe_errors

        raise InputRejected(
            f"the input does not fit {schema.name}: {describe_errors(e)}; no run was created"
        ) from None
    run_id = run_id or uuid.uuid4().hex[:16]
    tasks = start_tasks(graph.ir, state)
    now = time.time()
    try:
        input_json = schema.dump_state(state)
    except PydanticSerializationError as e:  # e.g. a lone surrogate, which UTF-8 refuses
        raise InputRejected(
            f"the input fits {schema.name} but cannot be stored as JSON: {e}; pass text "
            "that is valid Unicode (no lone surrogates) and JSON-serialisable values; no "
            "run was created"
        ) from None
    max_state = config.limits.max_state_bytes
    if len(input_json) > max_state:
        raise PayloadTooLarge("the input state", len(input_json), max_state, "max_state_bytes")
    run = RunRecord(
        id=run_id,
        graph=graph.name,
        fingerprint=graph.fingerprint,
        graph_doc=graph.graph_doc,
        status="running" if tasks else "completed",
        input=input_json,
        head_step=0,
        parent_id=parent,
        parent_step=parent_step,
        config=config.to_json(),
        created_at=now,
        updated_at=now,
    )
    step0 = StepRecord(
        run_id=run_id,
        step=0,
        tasks=json.dumps([t.to_json() for t in tasks]),
        joins="{}",
        snapshot=input_json,
        created_at=now,
    )
    return run, step0, state
