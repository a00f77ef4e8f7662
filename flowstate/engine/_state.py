"""State models, reducers and update validation.

A state is a pydantic model written by the user. A field annotated
``Annotated[T, reducer]`` combines writes with the reducer; any other field is replaced.
Built-in reducers are named (``append``, ``merge``, ``add``) so the name can be shown and
stored; any ``(old, new) -> value`` function is accepted as well.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic_core
from pydantic import BaseModel, TypeAdapter, ValidationError

from flowstate.errors import UpdateRejected, WriteConflict

from ._overwrite import OVERWRITE_KEY, Overwrite, stored_overwrite

__all__ = ["Redacted", "Reducer", "StateSchema", "add", "append", "merge"]


class Redacted:
    """Marks a state field that is never stored: ``api_key: Annotated[str, Redacted()] = ""``.

    Checkpoints (the run's input, snapshots, committed updates) leave the field out, so a
    resumed, replayed or forked run sees its default: the node that needs the value must
    derive it again (from the environment, a secret store …). The field needs a default.
    """

    def __repr__(self) -> str:
        return "Redacted()"


class Reducer:
    """A named ``(old, new) -> value`` function used to combine writes to a field."""

    def __init__(
        self,
        name: str,
        fn: Callable[[Any, Any], Any],
        *,
        builtin: bool = False,
        wrap_item: bool = False,
    ) -> None:
        self.name = name
        self.fn = fn
        self.builtin = builtin
        self.wrap_item = wrap_item

    def __call__(self, old: Any, new: Any) -> Any:
        return self.fn(old, new)

    def __repr__(self) -> str:
        return f"<reducer {self.name}>"


def _append(old: Any, new: Any) -> Any:
    return [*(old or ()), *new]


def _merge(old: Any, new: Any) -> Any:
    return {**(old or {}), **new}


def _add(old: Any, new: Any) -> Any:
    return new if old is None else old + new


append = Reducer("append", _append, builtin=True, wrap_item=True)
"""List field: the update's items are appended (a single item is accepted too)."""
merge = Reducer("merge", _merge, builtin=True)
"""Dict field: the update's keys are merged in, replacing existing keys."""
add = Reducer("add", _add, builtin=True)
"""Number (or sequence) field: the update is added with ``+``."""


def _is_reducer(m: object) -> bool:
    if isinstance(m, Reducer):
        return True
    return inspect.isfunction(m) or inspect.isbuiltin(m)


@dataclass
class FieldSpec:
    name: str
    annotation: Any
    """The field's type with any non-reducer metadata (constraints) kept."""
    reducer: Reducer | None
    adapter: TypeAdapter[Any]
    """Validates an update value for this field."""
    result_adapter: TypeAdapter[Any] | None
    """Validates a custom reducer's result; None when the reducer is built in or absent."""

    update_annotation: Any
    _value_adapter: TypeAdapter[Any] | None = None

    @property
    def value_adapter(self) -> TypeAdapter[Any]:
        """Validates a whole value of the field (an ``Overwrite``'s), built on first use."""
        if self._value_adapter is None:
            self._value_adapter = TypeAdapter(self.annotation)
        return self._value_adapter


class StateSchema:
    """What the engine knows about a state model: fields, reducers, validators."""

    def __init__(self, model: type[BaseModel]) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(
                f"the state must be a pydantic BaseModel subclass, not {model!r}: declare "
                "`class State(BaseModel): ...`"
            )
        self.model = model
        self.fields: dict[str, FieldSpec] = {}
        self.redacted: set[str] = set()
        """Fields marked ``Redacted()``: left out of every stored state and update."""
        for name, info in model.model_fields.items():
            reducer: Reducer | None = None
            keep: list[Any] = []
            for m in info.metadata:
                if isinstance(m, Redacted):
                    if info.is_required():
                        raise TypeError(
                            f"{model.__name__}.{name} is Redacted() and so never stored: give it "
                            "a default, which is what a resumed or replayed run sees"
                        )
                    self.redacted.add(name)
                elif _is_reducer(m) and reducer is None:
                    reducer = (
                        m
                        if isinstance(m, Reducer)
                        else Reducer(getattr(m, "__name__", "reducer"), m)
                    )
                else:
                    keep.append(m)
            # pydantic has already resolved the annotation and split off its metadata
            base = info.annotation
            annotation: Any = Annotated[tuple([base, *keep])] if keep else base
            update_ann: Any = annotation
            result_adapter: TypeAdapter[Any] | None = None
            if reducer is not None and not reducer.builtin:
                result_adapter = TypeAdapter(annotation)
                update_ann = _second_param_annotation(reducer.fn) or annotation
            self.fields[name] = FieldSpec(
                name=name,
                annotation=annotation,
                reducer=reducer,
                adapter=TypeAdapter(update_ann),
                result_adapter=result_adapter,
                update_annotation=update_ann,
            )

    @property
    def name(self) -> str:
        return self.model.__name__

    def custom_reducer_fields(self) -> set[str]:
        """Fields whose reducer is user code (it may refuse an update)."""
        return {
            n for n, f in self.fields.items() if f.reducer is not None and not f.reducer.builtin
        }

    def reducer_fields(self) -> set[str]:
        return {n for n, f in self.fields.items() if f.reducer is not None}

    # -- updates ---------------------------------------------------------------------

    def validate_update(
        self, node: str, update: Mapping[str, Any], declared: frozenset[str] | None
    ) -> dict[str, Any]:
        """Validate a node's raw update, field by field. Returns the validated values."""
        out: dict[str, Any] = {}
        for key, value in update.items():
            spec = self.fields.get(key)
            if spec is None:
                known = ", ".join(sorted(self.fields))
                raise UpdateRejected(
                    node,
                    key,
                    f"'{key}' is not a field of {self.name} (fields: {known}); add it to the "
                    "state model or stop returning it",
                )
            if declared is not None and key not in declared:
                raise UpdateRejected(
                    node,
                    key,
                    f"the node declares it writes only {sorted(declared)}; add '{key}' to its "
                    "return annotation or stop returning it",
                )
            if isinstance(value, Overwrite) or (
                isinstance(value, dict) and OVERWRITE_KEY in value and stored_overwrite(value)
            ):
                inner = value.value if isinstance(value, Overwrite) else value[OVERWRITE_KEY]
                try:
                    out[key] = Overwrite(spec.value_adapter.validate_python(inner))
                except ValidationError as e:
                    raise UpdateRejected(
                        node, key, "Overwrite(...): " + _describe(e, spec.annotation)
                    ) from None
                continue
            if (
                spec.reducer is not None
                and spec.reducer.wrap_item
                and not isinstance(value, list | tuple)
            ):
                value = [value]
            try:
                out[key] = spec.adapter.validate_python(value)
            except ValidationError as e:
                raise UpdateRejected(node, key, _describe(e, spec.update_annotation)) from None
        return out

    def dump_update(self, node: str, update: Mapping[str, Any]) -> str:
        doc: Mapping[str, Any] = {k: v for k, v in update.items() if k not in self.redacted}
        for v in doc.values():
            if isinstance(v, Overwrite):  # rare: only then is the update copied
                doc = {
                    k: {OVERWRITE_KEY: v.value} if isinstance(v, Overwrite) else v
                    for k, v in doc.items()
                }
                break
        try:
            return pydantic_core.to_json(dict(doc)).decode()
        except pydantic_core.PydanticSerializationError as e:
            raise UpdateRejected(node, None, f"it cannot be stored as JSON: {e}") from None

    def load_update(self, raw: str) -> dict[str, Any]:
        """Validate a stored update (JSON) field by field, strictly."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("update is not a JSON object")
        out: dict[str, Any] = {}
        for key, value in data.items():
            spec = self.fields.get(key)
            if spec is None:
                raise ValueError(f"unknown field '{key}'")
            if stored_overwrite(value):
                inner = json.dumps(value[OVERWRITE_KEY])
                out[key] = Overwrite(spec.value_adapter.validate_json(inner, strict=True))
                continue
            out[key] = spec.adapter.validate_json(json.dumps(value), strict=True)
        return out

    def apply(
        self, state: BaseModel, updates: list[tuple[str, dict[str, Any]]], step: int = 0
    ) -> BaseModel:
        """Merge validated updates, in order, into a new state (the input is not mutated).

        Raises WriteConflict if two updates write a field that has no reducer.
        """
        if not updates:
            return state
        values: dict[str, Any] = {}
        writers: dict[str, list[str]] = {}
        replaced: dict[str, str] = {}
        for node, upd in updates:
            for key, value in upd.items():
                spec = self.fields[key]
                if isinstance(value, Overwrite):  # replaces, whatever the reducer
                    if key in replaced or (spec.reducer is None and key in writers):
                        raise WriteConflict(step, key, [*writers[key], node])
                    replaced[key] = node
                    values[key] = value.value
                elif spec.reducer is None:
                    if key in writers:
                        raise WriteConflict(step, key, [*writers[key], node])
                    values[key] = value
                else:
                    old = values[key] if key in values else getattr(state, key)
                    try:
                        new = spec.reducer(old, value)
                    except Exception as e:
                        raise UpdateRejected(
                            node,
                            key,
                            f"reducer '{spec.reducer.name}' refused the update: "
                            f"{type(e).__name__}: {e}",
                        ) from e
                    if spec.result_adapter is not None:
                        try:
                            new = spec.result_adapter.validate_python(new)
                        except ValidationError as e:
                            raise UpdateRejected(
                                node,
                                key,
                                f"reducer '{spec.reducer.name}' produced an invalid value: "
                                f"{_describe(e, spec.annotation)}",
                            ) from None
                    values[key] = new
                writers.setdefault(key, []).append(node)
        return state.model_copy(update=values)

    def dump_state(self, state: BaseModel) -> str:
        """The state as stored: JSON, without its ``Redacted()`` fields."""
        return state.model_dump_json(exclude=self.redacted or None)

    def load_state(self, raw: str) -> BaseModel:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("state snapshot is not a JSON object")
        extra = set(data) - set(self.fields)
        if extra:
            raise ValueError(f"state snapshot has unknown fields {sorted(extra)}")
        return self.model.model_validate_json(raw, strict=True)

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()


def _second_param_annotation(fn: Callable[..., Any]) -> Any:
    try:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError):
        return None
    if len(params) < 2:
        return None
    return hints.get(params[1].name)


def _describe(e: ValidationError, annotation: Any) -> str:
    return f"expected {_type_name(annotation)}; " + describe_errors(e)


def describe_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"])
        got = err.get("input")
        r = repr(got)
        if len(r) > 60:
            r = r[:57] + "..."
        parts.append(f"{err['msg']}{' at ' + loc if loc else ''} (got {r})")
    more = e.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _type_name(t: Any) -> str:
    if isinstance(t, type):
        return t.__name__
    return str(t).replace("typing.", "")
