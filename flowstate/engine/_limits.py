"""Limits and budgets of a run (RELIABILITY.md G10). Stored with the run, so a resume
keeps them unless it raises them explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Limits"]

MiB = 1024 * 1024


class Limits(BaseModel):
    """Byte limits fail the offending node with ``PayloadTooLarge`` before anything is
    written; budgets pause the run (status ``paused``, with the reason) so it can be resumed
    with a higher budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_update_bytes: int = Field(default=4 * MiB, gt=0)
    """Largest update one activation may commit, as JSON."""
    max_effect_bytes: int = Field(default=4 * MiB, gt=0)
    """Largest effect result (e.g. an LLM response) that may be journaled, as JSON."""
    max_state_bytes: int = Field(default=64 * MiB, gt=0)
    """Largest state that may be stored (input and snapshots), as JSON."""
    token_budget: int | None = Field(default=None, gt=0)
    """Total LLM tokens (input + output) the run may use; reaching it pauses the run."""
    cost_budget: float | None = Field(default=None, gt=0)
    """Total LLM cost (USD, from the prices below) the run may use; reaching it pauses."""
    prices: dict[str, dict[str, float | None]] | None = None
    """Price table per model: `flowstate.llm.ModelPrice` values (USD per million input,
    output, cache-write and cache-read tokens), stored as plain dicts; None means
    `flowstate.llm.DEFAULT_PRICES`. Edit a copy:
    `Limits(prices={**DEFAULT_PRICES, "my-model": ModelPrice(input=1, output=4)})`."""
    input_price_per_mtok: float = Field(default=0.0, ge=0)
    """Price of input tokens of a model the table does not list (USD per million)."""
    output_price_per_mtok: float = Field(default=0.0, ge=0)
    """Price of output tokens of a model the table does not list (USD per million)."""

    @field_validator("prices", mode="before")
    @classmethod
    def _plain_prices(cls, value: Any) -> Any:
        # ModelPrice lives in flowstate.llm, which imports the anthropic SDK: the engine keeps
        # the table as plain data and imports the LLM layer only to price a usage.
        if isinstance(value, Mapping):
            return {
                str(k): v.model_dump() if isinstance(v, BaseModel) else v for k, v in value.items()
            }
        return value

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for counts of a model the table does not list (the flat prices above)."""
        return (
            input_tokens * self.input_price_per_mtok + output_tokens * self.output_price_per_mtok
        ) / 1e6

    def cost_of(self, usage: Mapping[str, int]) -> float:
        """USD for an activation's usage: per model from `prices`, the rest at the flat
        prices (cache writes at 1.25x and cache reads at 0.1x the flat input price)."""
        if not usage:
            return 0.0
        if not any("@" in key for key in usage):
            # no per-model counts (no JournaledLLM call): the flat prices, without importing
            # the LLM layer (and the SDK) for a node that only reported tokens
            flat_in = self.input_price_per_mtok
            return (
                self.cost(usage.get("input_tokens", 0), usage.get("output_tokens", 0))
                + usage.get("cache_creation_input_tokens", 0) * flat_in * 1.25 / 1e6
                + usage.get("cache_read_input_tokens", 0) * flat_in * 0.1 / 1e6
            )
        from flowstate.llm import ModelPrice, usage_cost

        fallback = ModelPrice(input=self.input_price_per_mtok, output=self.output_price_per_mtok)
        table = (
            None
            if self.prices is None
            else {m: ModelPrice.model_validate(p) for m, p in self.prices.items()}
        )
        return usage_cost(usage, table, fallback=fallback)
