"""Every public error survives pickling (a process pool, a worker, multiprocessing): same
class, same message with its code once, same attributes. Built with arguments hypothesis
draws from each constructor's own signature, so a new error class is covered unchanged."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstate.errors as errors
import flowstate.memory._errors as memory_errors

TEXT = st.text(max_size=20)
BY_ANNOTATION: dict[str, st.SearchStrategy[Any]] = {
    "str": TEXT,
    "str | None": st.none() | TEXT,
    "int": st.integers(),
    "int | None": st.none() | st.integers(),
    "float": st.floats(allow_nan=False),
    "bool": st.booleans(),
    "list[str]": st.lists(TEXT, max_size=3),
    "Any": TEXT,
    "object": TEXT,
    "BaseException": TEXT.map(ValueError),
}

# arguments whose annotation is wider than what the class reads from them
BY_PARAMETER: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("EffectDivergence", "recorded"): st.none(),  # an EffectRecord or None
}

CLASSES = [getattr(errors, name) for name in errors.__all__] + [
    cls
    for cls in vars(memory_errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.FlowstateError)
]


def arguments(cls: type[errors.FlowstateError]) -> st.SearchStrategy[dict[str, Any]]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return st.fixed_dictionaries(
        {
            p.name: BY_PARAMETER.get((cls.__name__, p.name), BY_ANNOTATION[str(p.annotation)])
            for p in params
        }
    )


def comparable(value: object) -> object:
    if isinstance(value, BaseException):
        return (type(value), value.args)
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_error_round_trips_through_pickle(cls: type[errors.FlowstateError], data: Any) -> None:
    err = cls(**data.draw(arguments(cls)))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err)
    assert str(back).count(f"{err.code}:") == str(err).count(f"{err.code}:")
    assert back.code == err.code
    assert comparable(vars(back)) == comparable(vars(err))
