"""The price table (``usage.prices``): USD per million input and output tokens.

Each entry is one line, ``"<model> <input> <output>"``, so the table fits the
config's plain lists (and ``USAGE_PRICES=a 1 2,b 3 4`` from the environment). A
model missing from the table is counted in tokens only: no price is ever guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError

PER_MILLION = 1_000_000
# The shipped example (config.yaml): OpenAI's public list prices, USD per million
# input / output tokens, as of EXAMPLE_PRICES_AS_OF. Check them before relying on them.
EXAMPLE_PRICES = ("gpt-4o-mini 0.15 0.60", "gpt-4o 2.50 10.00")
EXAMPLE_PRICES_AS_OF = "2025-06-01"
FIELDS_PER_ENTRY = 3  # model, input price, output price


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / PER_MILLION


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices by model name (exact match)."""

    prices: Mapping[str, Price]

    def get(self, model: str) -> Price | None:
        return self.prices.get(model)


def parse_prices(entries: Sequence[str], path: str = "usage.prices") -> PriceTable:
    """The table from config lines; ConfigError naming the bad entry otherwise."""
    prices: dict[str, Price] = {}
    for index, entry in enumerate(entries):
        where = f"{path}[{index}]"
        parts = entry.split()
        if len(parts) != FIELDS_PER_ENTRY:
            raise ConfigError(where, f"write '<model> <input> <output>', got {entry!r}")
        model, *numbers = parts
        try:
            given, taken = (float(n) for n in numbers)
        except ValueError:
            raise ConfigError(where, f"prices must be numbers, got {entry!r}") from None
        if not (given >= 0 and taken >= 0) or given == float("inf") or taken == float("inf"):
            raise ConfigError(where, f"prices must be finite and not negative, got {entry!r}")
        if model in prices:
            raise ConfigError(where, f"model {model!r} is listed twice")
        prices[model] = Price(given, taken)
    return PriceTable(prices)
