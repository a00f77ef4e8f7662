"""State isolation: every activation reads its own input, so an in-place mutation of it
can never reach the run's result, the stored state or a sibling activation.

A node gets an instance of an *isolated twin* of its input model: a subclass (so
``isinstance`` and the model's methods work) whose field values are shared with the
step's state until the node reads one. Fields that can hold a mutable value (a list, a
dict, a model, ``Any``) are descriptors on the twin: the first read hands the node its own
copy and keeps a fingerprint; assigning a field is recorded. After the node returns, the
engine compares each copied field with its fingerprint: a field changed (or assigned)
but not returned fails the node, naming the node and the field (``StateMutated``),
because that change would otherwise be lost without a word.

The cost follows what the node touches: creating the instance is a few dict operations
(~3 µs for a 10-field state); a field the node never reads, or one that can only hold
immutable values, costs nothing; a read mutable field costs one copy and one comparison
of that field alone (a flat list or dict of scalars: a shallow copy and ``==``; anything
nested: a JSON round trip through the field's type, the same round trip the checkpoint
store relies on, and its JSON as the fingerprint). Copying the whole state per
activation (``model_copy(deep=True)``) and fingerprinting the whole state before and
after both grow with the whole state (tens of milliseconds for a state holding a
100,000-item list): measured and rejected. ``bench/isolation.py`` measures all three.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import types
import typing
import uuid
from typing import Any

import pydantic_core
from pydantic import BaseModel, TypeAdapter

from flowstate.errors import StateMutated

__all__ = ["check_mutations", "isolate", "mutations"]

_IMMUTABLE: frozenset[type] = frozenset(
    {
        int,
        float,
        complex,
        str,
        bytes,
        bool,
        type(None),
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        frozenset,
    }
)
"""Value types a node cannot change in place: never copied. (A ``frozenset`` may hold
only hashable items, which are in practice immutable too.)"""

_UNTRACKED: Any = object()
"""Fingerprint of a field whose copy could not be made through JSON (deep-copied
instead, not compared afterwards)."""
_ASSIGNED: Any = object()
"""Marks a field the node assigned (``s.items = [...]``) instead of returning it."""

_IMMUTABLE_ANNOTATIONS: frozenset[Any] = _IMMUTABLE | {type(None)}


def _immutable_annotation(ann: Any) -> bool:
    """True when every value of the annotation is immutable (no descriptor needed)."""
    if ann in _IMMUTABLE_ANNOTATIONS:
        return True
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return True
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        args = typing.get_args(ann)
        if origin is typing.Annotated:
            args = args[:1]
        return all(_immutable_annotation(a) for a in args)
    if origin in (tuple, frozenset):
        return all(a is Ellipsis or _immutable_annotation(a) for a in typing.get_args(ann))
    return False


def _flat_annotation(ann: Any) -> bool:
    """True when every value of the annotation is immutable or a list, set or dict whose
    items are (``list[str]``, ``dict[str, int]``, ``list[str] | None``): the state's values
    were validated against it, so a shallow copy is a full copy without looking at each
    item (a Python-level scan of a 10,000-item list per read made a node that reads a
    growing list quadratic: bench W6)."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return _flat_annotation(args[0])
    if origin in (typing.Union, types.UnionType):
        return all(_immutable_annotation(a) or _flat_annotation(a) for a in args)
    if origin in (list, set):
        return len(args) == 1 and _immutable_annotation(args[0])
    if origin is dict:
        return len(args) == 2 and all(_immutable_annotation(a) for a in args)
    return False


class _Same:
    """Fingerprint of a flat container: the shared original itself, which the node cannot
    reach (it got a copy), compared with ``==`` afterwards."""

    __slots__ = ("original",)

    def __init__(self, original: Any) -> None:
        self.original = original


class _Field:
    """Copy-on-first-read of one field that may hold a mutable value (a data
    descriptor on the isolated twin class, so it comes before the instance ``__dict__``;
    fields that can only hold immutable values get none and are read at native speed)."""

    __slots__ = ("name", "twin")

    def __init__(self, twin: _Twin, name: str) -> None:
        self.twin = twin
        self.name = name

    def __get__(self, inst: Any, owner: Any = None) -> Any:
        if inst is None:
            return self
        name = self.name
        d = _get(inst, "__dict__")
        copied = _copied(inst)
        if name in copied:
            return d[name]
        value = d[name]
        if type(value) in _IMMUTABLE or isinstance(value, enum.Enum):
            copied[name] = None
            return value
        d[name], copied[name] = self.twin.copy(name, value)
        return d[name]

    def __set__(self, inst: Any, value: Any) -> None:
        _copied(inst)[self.name] = _ASSIGNED
        _get(inst, "__dict__")[self.name] = value


class _Twin:
    """What the engine keeps per input model: the isolated subclass and field adapters."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.adapters: dict[str, TypeAdapter[Any] | None] = {}
        self.flat = frozenset(
            name for name, info in model.model_fields.items() if _flat_annotation(info.annotation)
        )
        """Fields whose lists, sets and dicts hold immutable items by their annotation."""
        twin = self
        base_setattr = model.__setattr__

        def __setattr__(self: Any, name: str, value: Any) -> None:
            if name in twin.model.model_fields:
                _copied(self)[name] = _ASSIGNED
            base_setattr(self, name, value)

        cls = type(
            model.__name__,
            (model,),
            {
                "__slots__": ("__fs_copied__",),
                "__module__": model.__module__,
                "__qualname__": model.__qualname__,
                "__doc__": model.__doc__,
            },
        )
        # installed after the class is made: pydantic would take a class attribute named
        # like a field, in the class body, for a new default
        for name, info in model.model_fields.items():
            if not _immutable_annotation(info.annotation):
                type.__setattr__(cls, name, _Field(self, name))
        type.__setattr__(cls, "__setattr__", __setattr__)
        self.cls: type[BaseModel] = cls

    def adapter(self, name: str) -> TypeAdapter[Any] | None:
        if name not in self.adapters:
            try:
                annotation: Any = self.model.model_fields[name].annotation
                self.adapters[name] = TypeAdapter(annotation)
            except Exception:  # an annotation pydantic cannot adapt alone: deep-copy it
                self.adapters[name] = None
        return self.adapters[name]

    def copy(self, name: str, value: Any) -> tuple[Any, Any]:
        """A fresh copy of a field's value, and what to compare it with afterwards."""
        kind = type(value)
        if name in self.flat and (kind is list or kind is set or kind is dict):
            return kind(value), _Same(value)
        if kind is list or kind is set or kind is tuple:
            if all(type(x) in _IMMUTABLE for x in value):
                return kind(value), _Same(value)  # flat: a shallow copy is a full copy
        elif kind is dict and all(type(x) in _IMMUTABLE for x in value.values()):
            return dict(value), _Same(value)
        adapter = self.adapter(name)
        if adapter is not None:
            try:
                raw = pydantic_core.to_json(value)
                fresh = adapter.validate_json(raw)
                if type(fresh) is type(value):
                    return fresh, raw
            except Exception:
                pass
        try:
            return copy.deepcopy(value), _UNTRACKED
        except Exception:
            return value, _UNTRACKED


_get = object.__getattribute__
_set = object.__setattr__


def _copied(inst: Any) -> dict[str, Any]:
    """The fields an isolated instance has read or assigned (created on demand: a
    ``model_copy`` of an isolated instance starts with none)."""
    try:
        return _get(inst, "__fs_copied__")
    except AttributeError:
        copied: dict[str, Any] = {}
        _set(inst, "__fs_copied__", copied)
        return copied


_twins: dict[type[BaseModel], _Twin] = {}


def _twin(model: type[BaseModel]) -> _Twin:
    t = _twins.get(model)
    if t is None:
        t = _twins[model] = _Twin(model)
    return t


def isolate(model: type[BaseModel], source: BaseModel | dict[str, Any]) -> BaseModel:
    """An isolated instance of ``model`` over ``source``'s field values (a state of that
    model, or the values of a view). Nothing it does reaches ``source``."""
    cls = _twin(model).cls
    inst = cls.__new__(cls)
    if isinstance(source, BaseModel):
        _set(inst, "__dict__", source.__dict__.copy())
        _set(inst, "__pydantic_fields_set__", source.__pydantic_fields_set__.copy())
        _set(inst, "__pydantic_extra__", source.__pydantic_extra__)
        _set(inst, "__pydantic_private__", source.__pydantic_private__)
    else:
        _set(inst, "__dict__", source.copy())
        _set(inst, "__pydantic_fields_set__", set(source))
        _set(inst, "__pydantic_extra__", None)
        _set(inst, "__pydantic_private__", None)
    _set(inst, "__fs_copied__", {})
    return inst


def mutations(inst: Any, source: BaseModel | dict[str, Any]) -> list[str]:
    """Fields of an isolated input that the node changed (in place, or by assignment).
    Only the fields the node read or assigned are looked at."""
    try:
        copied: dict[str, Any] = _get(inst, "__fs_copied__")
    except AttributeError:
        return []
    if not copied:
        return []
    d = _get(inst, "__dict__")
    out: list[str] = []
    for name, fp in copied.items():
        if fp is None or fp is _UNTRACKED:
            continue
        if fp is _ASSIGNED:
            out.append(name)
            continue
        if isinstance(fp, _Same):
            if d[name] != fp.original:
                out.append(name)
            continue
        try:
            if pydantic_core.to_json(d[name]) != fp:
                out.append(name)
        except Exception:
            out.append(name)
    return out


def check_mutations(node: str, inst: Any, source: Any, returned: set[str]) -> None:
    """Fail the node (``StateMutated``) if it changed a field it did not return."""
    changed = [f for f in mutations(inst, source) if f not in returned]
    if changed:
        raise StateMutated(node, changed)
