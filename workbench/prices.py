"""The dated price table as data: USD per million tokens per model, read from TOML.

Prices live in `data/prices.toml`; `WORKBENCH_PRICES` points at a copy to add models or
override prices without touching code.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .io import DATA_DIR
from .types import Usage
from .validation import shorten

__all__ = [
    "ModelPrice",
    "PriceSheet",
    "PriceError",
    "load_prices",
    "load_price_sheet",
    "price_of",
    "usage_cost",
    "PRICES_PATH",
    "PER_MILLION",
]

PRICES_PATH = DATA_DIR / "prices.toml"
PER_MILLION = 1_000_000
_PRICE_KEYS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "batch_discount")


class PriceError(ValueError):
    """The price table is missing, malformed, or lacks a model; the message says the fix."""


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """List prices of one model in USD per million tokens.

    `batch_discount` is the fraction taken off every token price in batch processing
    (0.5 = half price); Anthropic's caching multipliers stack with it.
    """

    model: str
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    batch_discount: float

    def __post_init__(self) -> None:
        for name in _PRICE_KEYS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise PriceError(f"price {name}={value!r} of model {self.model!r} must be a number >= 0")
        if not 0 <= self.batch_discount < 1:
            raise PriceError(
                f"batch_discount={self.batch_discount} of model {self.model!r} must lie in [0, 1): "
                "it is the fraction taken off (0.5 = half price)"
            )

    def cache_write(self, ttl: str) -> float:
        """The cache-write price for a cache lifetime of "5m" or "1h"."""
        if ttl == "5m":
            return self.cache_write_5m
        if ttl == "1h":
            return self.cache_write_1h
        raise ValueError(f"unknown cache_ttl {ttl!r}; choose one of ['1h', '5m']")


@dataclass(frozen=True, kw_only=True)
class PriceSheet:
    """A whole price table: its date, its source and the prices by model id."""

    date: str
    source: str
    path: str
    prices: Mapping[str, ModelPrice]


def load_price_sheet(path: str | Path | None = None) -> PriceSheet:
    """Read a price table (TOML: `date`, `source`, one `[models.<id>]` table per model).

    Args:
        path: the file; default `$WORKBENCH_PRICES`, else the bundled `data/prices.toml`.

    Raises:
        PriceError: the file is missing, not TOML, or a model lacks a price or has a bad one.
    """
    path = Path(path or os.environ.get("WORKBENCH_PRICES") or PRICES_PATH)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PriceError(
            f"price table {str(path)!r} does not exist; fix WORKBENCH_PRICES or copy data/prices.toml there"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PriceError(f"price table {str(path)!r} is not valid TOML: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise PriceError(f"price table {str(path)!r} has no [models.<id>] tables; see data/prices.toml")
    prices: dict[str, ModelPrice] = {}
    for model, table in models.items():
        if not isinstance(table, dict):
            raise PriceError(f"models.{model} in {str(path)!r} must be a table of prices")
        missing = [k for k in _PRICE_KEYS if k not in table]
        unknown = sorted(set(table) - set(_PRICE_KEYS))
        if missing or unknown:
            raise PriceError(
                f"models.{model} in {str(path)!r}: missing {missing}, unknown {unknown}; "
                f"each model needs exactly {list(_PRICE_KEYS)}"
            )
        prices[model] = ModelPrice(model=model, **table)
    return PriceSheet(
        date=str(data.get("date", "")), source=str(data.get("source", "")), path=str(path), prices=prices
    )


def load_prices(path: str | Path | None = None) -> dict[str, ModelPrice]:
    """The prices by model id from a price table (see `load_price_sheet`)."""
    return dict(load_price_sheet(path).prices)


def price_of(model: str, prices: Mapping[str, ModelPrice] | None = None) -> ModelPrice:
    """The price of `model`.

    Raises:
        PriceError: the model is not in the table (the message lists the known ones).
    """
    prices = load_prices() if prices is None else prices
    try:
        return prices[model]
    except KeyError:
        raise PriceError(
            f"no price for model {shorten(model)}; known models are {sorted(prices)}. "
            "Add a [models.<id>] table to a copy of data/prices.toml and set WORKBENCH_PRICES"
        ) from None


def usage_cost(usage: Usage, price: ModelPrice, *, batch: bool = False, cache_ttl: str = "5m") -> float:
    """USD cost of one call's tokens.

    `usage.input_tokens` are the uncached input tokens, as the API reports them; cache writes
    are priced at the `cache_ttl` rate and the batch discount applies to every token kind.
    """
    cost = (
        usage.input_tokens * price.input
        + usage.cache_write_tokens * price.cache_write(cache_ttl)
        + usage.cache_read_tokens * price.cache_read
        + usage.output_tokens * price.output
    ) / PER_MILLION
    return cost * (1 - price.batch_discount) if batch else cost
