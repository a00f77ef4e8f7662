"""@tool, Tool.invoke, ToolOutcome and ToolRegistry."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from flowstate.llm import (
    LLMConfigError,
    Tool,
    ToolCall,
    ToolInputError,
    ToolOutcome,
    ToolRegistry,
    ToolResultBlock,
    ToolSpec,
    tool,
)

pytestmark = pytest.mark.anyio


class Address(BaseModel):
    street: str
    city: str


@tool
def search(
    query: str,
    limit: int = 5,
    lang: Literal["en", "fr"] = "en",
    site: str | None = None,
    tags: Annotated[list[str], Field(description="Labels to filter by.")] = [],  # noqa: B006
) -> list[str]:
    """Search the docs.

    Returns matching page titles.
    """
    return [f"{query}:{i}:{lang}:{site}:{','.join(tags)}" for i in range(limit)]


@tool(name="geocode", description="Turn an address into coordinates.")
async def locate(address: Address, precise: bool = False) -> dict[str, float]:
    """This docstring is overridden."""
    await asyncio.sleep(0)
    return {"lat": 59.9 if address.city == "Oslo" else 0.0, "lon": 10.7}


def test_sync_tool_schema_from_signature() -> None:
    schema = search.input_schema

    assert search.name == "search"
    assert search.description == "Search the docs.\n\nReturns matching page titles."
    assert schema["type"] == "object"
    assert schema["required"] == ["query"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["query"]["type"] == "string"
    assert props["limit"] == {"default": 5, "title": "Limit", "type": "integer"}
    assert props["lang"]["enum"] == ["en", "fr"]
    assert props["lang"]["default"] == "en"
    assert props["site"]["default"] is None
    assert {"type": "null"} in props["site"]["anyOf"]
    assert props["tags"]["description"] == "Labels to filter by."
    assert props["tags"]["items"] == {"type": "string"}
    assert search.spec == ToolSpec(
        name="search", description=search.description, input_schema=schema
    )


def test_async_tool_with_name_description_and_nested_model() -> None:
    schema = locate.input_schema

    assert isinstance(locate, Tool)
    assert locate.name == "geocode"
    assert locate.description == "Turn an address into coordinates."
    assert schema["required"] == ["address"]
    assert schema["properties"]["address"]["$ref"] == "#/$defs/Address"
    assert schema["$defs"]["Address"]["required"] == ["street", "city"]
    assert schema["properties"]["precise"]["default"] is False


def test_parameter_names_that_clash_with_pydantic_are_kept() -> None:
    @tool
    def convert(json: str, model_config: int = 0, copy: bool = False) -> str:
        """Odd parameter names."""
        return f"{json}{model_config}{copy}"

    assert list(convert.input_schema["properties"]) == ["json", "model_config", "copy"]


async def test_tool_object_stays_callable_and_keeps_metadata() -> None:
    assert search("x", limit=1) == ["x:0:en:None:"]
    assert search.__doc__ is not None and search.__name__ == "search"
    assert await locate(Address(street="a", city="Oslo")) == {"lat": 59.9, "lon": 10.7}


async def test_invoke_validates_coerces_and_applies_defaults() -> None:
    outcome = await search.invoke({"query": "pydantic", "limit": "2"}, tool_use_id="toolu_1")

    assert outcome == ToolOutcome(
        tool_use_id="toolu_1",
        name="search",
        content='["pydantic:0:en:None:", "pydantic:1:en:None:"]',
        is_error=False,
    )


async def test_async_tool_invoke_builds_nested_models() -> None:
    outcome = await locate.invoke({"address": {"street": "Karl Johans gate", "city": "Oslo"}})

    assert not outcome.is_error
    assert outcome.content == '{"lat": 59.9, "lon": 10.7}'


@pytest.mark.parametrize(
    ("given", "needles"),
    [
        ({"query": "q", "limit": "many"}, ["argument 'limit'", "valid integer", "'many'"]),
        ({"limit": 1}, ["missing required argument 'query'"]),
        ({"query": "q", "colour": "red"}, ["unexpected argument 'colour'", "query, limit"]),
        ({"query": "q", "lang": "de"}, ["argument 'lang'", "'en' or 'fr'"]),
        (["q"], ["expected a JSON object"]),
    ],
)
async def test_invalid_input_becomes_an_error_outcome(given: object, needles: list[str]) -> None:
    outcome = await search.invoke(given, tool_use_id="toolu_x")  # type: ignore[arg-type]

    assert outcome.is_error
    assert outcome.tool_use_id == "toolu_x"
    assert outcome.content.startswith("ToolInputError: invalid input for tool 'search'")
    for needle in needles:
        assert needle in outcome.content


async def test_nested_validation_error_names_the_path() -> None:
    outcome = await locate.invoke({"address": {"street": "x"}})
    assert outcome.is_error
    assert "missing required argument 'address.city'" in outcome.content


def test_validate_input_raises_tool_input_error() -> None:
    with pytest.raises(ToolInputError) as caught:
        search.validate_input({"limit": 2})
    assert caught.value.tool == "search"
    assert search.validate_input({"query": "q"}) == {
        "query": "q",
        "limit": 5,
        "lang": "en",
        "site": None,
        "tags": [],
    }


async def test_exceptions_become_error_outcomes() -> None:
    @tool
    def fragile(n: int) -> int:
        """Fails on odd numbers."""
        if n % 2:
            raise ValueError(f"{n} is odd")
        return n

    @tool
    async def fragile_async(n: int) -> int:
        """Always fails."""
        raise PermissionError("no access")

    assert (await fragile.invoke({"n": 2})).content == "2"
    failed = await fragile.invoke({"n": 3}, tool_use_id="toolu_f")
    assert failed.is_error
    assert failed.content == "ValueError: 3 is odd"
    assert failed.to_block() == ToolResultBlock(
        tool_use_id="toolu_f", content="ValueError: 3 is odd", is_error=True
    )
    assert (await fragile_async.invoke({"n": 1})).content == "PermissionError: no access"


async def test_cancellation_is_not_swallowed() -> None:
    @tool
    async def hang() -> str:
        """Never returns."""
        await asyncio.sleep(10)
        return "unreachable"

    task = asyncio.ensure_future(hang.invoke({}))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "content"),
    [
        ("plain text", "plain text"),
        ({"a": [1, 2.5, None, True]}, '{"a": [1, 2.5, null, true]}'),
        (None, "null"),
        (Point(1, 2), '{"x": 1, "y": 2}'),
        (Address(street="s", city="c"), '{"street": "s", "city": "c"}'),
        ("ünïcødé", "ünïcødé"),
    ],
)
async def test_results_are_json_encoded(value: object, content: str) -> None:
    @tool
    def give() -> object:
        """Returns a fixed value."""
        return value

    outcome = await give.invoke({})
    assert not outcome.is_error
    assert outcome.content == content


@pytest.mark.parametrize("value", [Opaque(), float("nan"), {"when": object()}])
async def test_unencodable_results_become_error_outcomes(value: object) -> None:
    @tool
    def give() -> object:
        """Returns something JSON cannot hold."""
        return value

    outcome = await give.invoke({})

    assert outcome.is_error
    assert "cannot be encoded as JSON" in outcome.content
    assert "tool 'give'" in outcome.content


async def test_sync_tools_run_in_a_worker_thread() -> None:
    @tool
    def which_thread() -> int:
        """Returns the current thread id."""
        return threading.get_ident()

    outcome = await which_thread.invoke({})

    assert int(outcome.content) != threading.get_ident()


def test_positional_only_parameters_are_supported() -> None:
    @tool
    def power(base: int, exp: int = 2, /) -> int:
        """base ** exp."""
        return base**exp

    outcome = asyncio.run(power.invoke({"base": 3, "exp": 3}))
    assert outcome.content == "27"


def test_bad_tool_definitions_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def variadic(*items: int) -> int:
        return sum(items)

    def kwargs_only(**options: str) -> str:
        return ""

    with pytest.raises(LLMConfigError, match="'x' has no type annotation"):
        tool(untyped)
    with pytest.raises(LLMConfigError, match="is variadic"):
        tool(variadic)
    with pytest.raises(LLMConfigError, match="is variadic"):
        tool(kwargs_only)
    with pytest.raises(LLMConfigError, match="invalid tool name 'has space'"):
        tool(name="has space")(search.fn)


def test_unschemable_annotations_are_refused() -> None:
    def takes_opaque(thing: Opaque) -> str:
        return ""

    with pytest.raises(LLMConfigError, match="takes_opaque"):
        tool(takes_opaque)


# --- registry ---------------------------------------------------------------------------------


def _sleeper(name: str, seconds: float) -> Tool:
    async def nap(label: str) -> str:
        await asyncio.sleep(seconds)
        return f"{name}:{label}"

    return tool(name=name, description=f"Sleeps {seconds}s.")(nap)


def _blocking_sleeper(name: str, seconds: float) -> Tool:
    def nap(label: str) -> str:
        time.sleep(seconds)
        return f"{name}:{label}"

    return tool(name=name, description=f"Blocks {seconds}s.")(nap)


@pytest.mark.parametrize("make", [_sleeper, _blocking_sleeper], ids=["async", "sync"])
async def test_run_calls_is_concurrent_and_keeps_call_order(make) -> None:  # type: ignore[no-untyped-def]
    delays = {"slow": 0.3, "fast": 0.05, "medium": 0.15}
    registry = ToolRegistry([make(name, s) for name, s in delays.items()])
    calls = [
        ToolCall(id=f"toolu_{i}", name=name, input={"label": str(i)})
        for i, name in enumerate(["slow", "fast", "medium", "fast"])
    ]

    started = time.monotonic()
    outcomes = await registry.run_calls(calls)
    elapsed = time.monotonic() - started

    assert [o.tool_use_id for o in outcomes] == ["toolu_0", "toolu_1", "toolu_2", "toolu_3"]
    assert [o.content for o in outcomes] == ["slow:0", "fast:1", "medium:2", "fast:3"]
    assert elapsed < sum(delays[c.name] for c in calls) * 0.8
    assert elapsed >= 0.3


async def test_unknown_tool_lists_the_known_tools() -> None:
    registry = ToolRegistry([search, locate])

    (outcome,) = await registry.run_calls([ToolCall(id="toolu_u", name="serch", input={})])

    assert outcome.is_error
    assert outcome.tool_use_id == "toolu_u"
    assert outcome.name == "serch"
    assert "'serch' does not exist" in outcome.content
    assert "search, geocode" in outcome.content


async def test_allow_list_limits_specs_and_calls() -> None:
    registry = ToolRegistry([search, locate], allow=["search"])

    assert [s.name for s in registry.specs] == ["search"]
    assert "geocode" not in registry and "search" in registry
    assert len(registry) == 1
    blocked, allowed = await registry.run_calls(
        [
            ToolCall(id="a", name="geocode", input={"address": {"street": "s", "city": "c"}}),
            ToolCall(id="b", name="search", input={"query": "q", "limit": 1}),
        ]
    )
    assert blocked.is_error and "'geocode' is not available here" in blocked.content
    assert "available tools: search" in blocked.content
    assert not allowed.is_error


def test_registry_lookup_and_restrict() -> None:
    registry = ToolRegistry([search, locate])

    assert registry["geocode"] is locate
    assert registry.get("nope") is None
    assert registry.names == ["search", "geocode"]
    assert [t.name for t in registry.restrict(["geocode"])] == ["geocode"]
    with pytest.raises(KeyError, match="available: search, geocode"):
        registry["nope"]


def test_registry_wraps_plain_functions() -> None:
    def shout(text: str) -> str:
        """Upper-cases text."""
        return text.upper()

    registry = ToolRegistry([shout])

    assert registry.specs[0].description == "Upper-cases text."


def test_registry_setup_errors() -> None:
    with pytest.raises(LLMConfigError, match="two tools are named 'search'"):
        ToolRegistry([search, tool(name="search")(locate.fn)])
    with pytest.raises(LLMConfigError, match=r"unknown tools \['nope'\]"):
        ToolRegistry([search], allow=["search", "nope"])
