"""``Overwrite(value)``: replace a reducer field's value for one write.

A field with a reducer (``messages: Annotated[list[str], append]``) combines every write
with what it holds. A node that must *replace* it (trim a long history, reset a counter)
returns ``{"messages": Overwrite(messages[-10:])}``: that one write sets the field, later
writes reduce onto the new value as usual.

Stored updates stay JSON only: an overwrite is stored as ``{"__overwrite__": value}`` in
the update's field, and read back (resume, replay, fork, history) as ``Overwrite(value)``.
That one-key object is therefore reserved: an update value of exactly that shape is taken
as an overwrite, which is also how JSON callers (``update_state`` over HTTP, ``flowstate
resume --update``) ask for one.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, get_args, get_origin

from pydantic import GetCoreSchemaHandler, TypeAdapter
from pydantic_core import core_schema

__all__ = ["OVERWRITE_KEY", "Overwrite", "overwrite_inner", "stored_overwrite"]

OVERWRITE_KEY = "__overwrite__"
"""The one key of an overwrite's JSON form."""

T = TypeVar("T")


class Overwrite(Generic[T]):
    """Replace the field's value with ``value`` for this write, bypassing its reducer.

    Declare it in the node's return type (``TypedDict``/model field ``Overwrite[list[str]]``,
    or ``list[str] | Overwrite[list[str]]``) so that ``compile()`` checks the value's type
    against the field's; the value is validated against the field's type at run time.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Overwrite) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("Overwrite", repr(self.value)))

    def __repr__(self) -> str:
        return f"Overwrite({self.value!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # a model field typed Overwrite[X] (a node's update model) holds an Overwrite
        # whose value is an X
        args = get_args(source)
        inner: TypeAdapter[Any] = TypeAdapter(args[0] if args else Any)

        def check(v: Overwrite[Any]) -> Overwrite[Any]:
            return Overwrite(inner.validate_python(v.value))

        return core_schema.no_info_after_validator_function(
            check,
            core_schema.is_instance_schema(cls),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: {OVERWRITE_KEY: inner.dump_python(v.value, mode="json")}
            ),
        )


def stored_overwrite(value: Any) -> bool:
    """Whether a JSON update value is the stored form of an overwrite."""
    return isinstance(value, dict) and len(value) == 1 and OVERWRITE_KEY in value


def overwrite_inner(t: Any) -> list[Any]:
    """The value types of the ``Overwrite[...]`` in a declared write type (a union may
    offer one beside a plain value); empty when it declares none."""
    if get_origin(t) is Overwrite:
        args = get_args(t)
        return [args[0] if args else Any]
    if t is Overwrite:
        return [Any]
    out: list[Any] = []
    for a in get_args(t) if get_origin(t) is not None else ():
        out += overwrite_inner(a) if get_origin(a) is Overwrite or a is Overwrite else []
    return out
