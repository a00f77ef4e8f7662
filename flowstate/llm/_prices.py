"""Model prices: what a call costs, from its token counts and a price table you can edit.

    DEFAULT_PRICES["claude-sonnet-4-5"]             # ModelPrice(input=3.0, output=15.0, ...)
    prices = {**DEFAULT_PRICES, "my-finetune": ModelPrice(input=2.0, output=8.0)}
    usage_cost({"input_tokens@my-finetune": 1_000_000}, prices)      # 2.0

Prices are US dollars per million tokens, for the four kinds of token the Messages API bills:
plain input, output, cache writes (`cache_creation_input_tokens`) and cache reads
(`cache_read_input_tokens`). A model name matches the longest table key it starts with, so
`claude-sonnet-4-5-20250929` is priced as `claude-sonnet-4-5`.

The default table holds Anthropic's list prices when this was written (5-minute cache
writes); prices change, so check them and pass your own table where money matters.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_PRICES",
    "MODEL_KEY_SEP",
    "USAGE_KEYS",
    "ModelPrice",
    "price_of",
    "split_usage",
    "usage_cost",
]

MODEL_KEY_SEP = "@"
"""Separates a count from its model in usage keys: `input_tokens@claude-sonnet-4-5`."""

USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
"""The token counts a price applies to, in the order `ModelPrice` lists its rates."""


class ModelPrice(BaseModel):
    """What one model charges, in USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    """Plain (uncached) prompt tokens."""
    output: float = Field(ge=0)
    """Generated tokens, thinking included."""
    cache_write: float | None = Field(default=None, ge=0)
    """Prompt tokens written to the cache; None means 1.25 × `input` (5-minute cache)."""
    cache_read: float | None = Field(default=None, ge=0)
    """Prompt tokens read from the cache; None means 0.1 × `input`."""

    def rates(self) -> dict[str, float]:
        """The rate (USD per million tokens) of each usage key."""
        return {
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_creation_input_tokens": (
                self.cache_write if self.cache_write is not None else self.input * 1.25
            ),
            "cache_read_input_tokens": (
                self.cache_read if self.cache_read is not None else self.input * 0.1
            ),
        }

    def cost(self, counts: Mapping[str, int]) -> float:
        """USD for these token counts (keys as in `USAGE_KEYS`; others are ignored)."""
        rates = self.rates()
        return sum(rates[k] * counts.get(k, 0) for k in USAGE_KEYS) / 1e6


def _p(inp: float, out: float) -> ModelPrice:
    return ModelPrice(input=inp, output=out, cache_write=inp * 1.25, cache_read=inp * 0.1)


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "claude-opus-4-5": _p(5.0, 25.0),
    "claude-opus-4-1": _p(15.0, 75.0),
    "claude-opus-4": _p(15.0, 75.0),
    "claude-sonnet-4-5": _p(3.0, 15.0),
    "claude-sonnet-4": _p(3.0, 15.0),
    "claude-3-7-sonnet": _p(3.0, 15.0),
    "claude-3-5-sonnet": _p(3.0, 15.0),
    "claude-haiku-4-5": _p(1.0, 5.0),
    "claude-3-5-haiku": _p(0.8, 4.0),
    "claude-3-haiku": _p(0.25, 1.25),
}
"""Anthropic list prices (USD per million tokens) at the time of writing; copy and edit it:
`{**DEFAULT_PRICES, "claude-sonnet-4-5": ModelPrice(input=..., output=...)}`."""


def price_of(model: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The price of `model`: its exact entry, else the longest key it starts with, else None."""
    if model in prices:
        return prices[model]
    matches = [k for k in prices if model.startswith(k)]
    return prices[max(matches, key=len)] if matches else None


def split_usage(usage: Mapping[str, int]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """A usage dict as (totals, per model): `input_tokens@m` keys go to model `m`."""
    totals: dict[str, int] = {}
    per_model: dict[str, dict[str, int]] = {}
    for key, value in usage.items():
        count, sep, model = key.partition(MODEL_KEY_SEP)
        if sep:
            slot = per_model.setdefault(model, {})
            slot[count] = slot.get(count, 0) + int(value)
        else:
            totals[key] = totals.get(key, 0) + int(value)
    return totals, per_model


def usage_cost(
    usage: Mapping[str, int],
    prices: Mapping[str, ModelPrice] | None = None,
    *,
    fallback: ModelPrice | None = None,
) -> float:
    """USD for a usage dict (one activation's, or a sum of them).

    Counts recorded per model (`input_tokens@model`) are priced with that model's entry of
    `prices` (default `DEFAULT_PRICES`); counts with no priced model (a model missing from the
    table, or counts recorded without a model) use `fallback`, or cost nothing without one.
    """
    table = DEFAULT_PRICES if prices is None else prices
    totals, per_model = split_usage(usage)
    cost = 0.0
    unpriced = dict(totals)
    for model, counts in per_model.items():
        price = price_of(model, table)
        if price is None:
            continue
        cost += price.cost(counts)
        for key, value in counts.items():
            unpriced[key] = unpriced.get(key, 0) - value
    if fallback is not None:
        cost += fallback.cost({k: max(v, 0) for k, v in unpriced.items()})
    return cost
