"""Cost levers measured, not typed in: each lever's rate comes from the user's traffic where it can.

`prompt_cache_summary` sums the cache reads and writes in a run's real `usage` (the measured
hit rate, the cost against no caching, and the break-even reads per write). `levers` builds the
cost model's `Workload` from what was measured (a `CacheRates` from the traces, a prompt-cache
summary, the response-cache hit rate of `benchmarks/response_cache.py`'s chosen threshold, the
share of requests a run sent through the Batch API, a router's traffic mix) and labels every
lever "measured" or "assumed", so a waterfall never shows a typed-in rate as a fact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .costs import LEVERS, Workload
from .prices import ModelPrice, load_prices, price_of, usage_cost
from .types import Usage

__all__ = ["PromptCacheSummary", "prompt_cache_summary", "break_even_reads", "LeverFigure", "levers"]

Source = Literal["measured", "assumed"]


def break_even_reads(price: ModelPrice, cache_ttl: str = "5m") -> float:
    """Cache reads per write at which caching a prefix costs the same as not caching it.

    A write costs `cache_write - input` more than sending the prefix plainly; each read saves
    `input - cache_read`. (5-minute TTL at list prices: 0.25 / 0.9 = 0.28 reads per write.)
    """
    return (price.cache_write(cache_ttl) - price.input) / (price.input - price.cache_read)


@dataclass(frozen=True, kw_only=True)
class PromptCacheSummary:
    """Prompt-cache use summed over a run's calls, from their `usage` (counted by the API)."""

    requests: int
    requests_reading: int  # calls that read the cached prefix
    requests_writing: int  # calls that wrote it (and did not read)
    uncached_input_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float  # as billed, with caching
    cost_without_caching_usd: float  # the same tokens, every input token at the input price
    break_even_reads: float  # reads per write that repay the write premium (mean over the models)

    @property
    def hit_rate(self) -> float:
        """Share of the calls using the cache that read it (the cost model's `prompt_cache_hit_rate`)."""
        using = self.requests_reading + self.requests_writing
        return self.requests_reading / using if using else 0.0

    @property
    def reads_per_write(self) -> float:
        """Cached tokens read per cached token written (above `break_even_reads`: caching pays)."""
        return self.cache_read_tokens / self.cache_write_tokens if self.cache_write_tokens else float("inf")

    @property
    def saving_usd(self) -> float:
        """What caching saved on this run (negative: writes not yet repaid by reads)."""
        return self.cost_without_caching_usd - self.cost_usd


def prompt_cache_summary(
    usages: Sequence[Usage], *, prices: Mapping[str, ModelPrice] | None = None, cache_ttl: str = "5m"
) -> PromptCacheSummary:
    """Sum the cache reads and writes of a run's calls, and price them with and without caching.

    Only usage counted by the API (`Usage.counted`) is measured; estimates are left out.

    Raises:
        ValueError: no counted usage (nothing was measured).
    """
    counted = [u for u in usages if u.counted]
    if not counted:
        raise ValueError("no counted usage to measure prompt caching from; run the config with generation.kind="
                         "'anthropic' (offline generators report no cache tokens)")
    prices = load_prices() if prices is None else prices
    with_cache = without = 0.0
    for u in counted:
        price = price_of(u.model, prices)
        with_cache += usage_cost(u, price, cache_ttl=cache_ttl)
        plain = Usage(model=u.model, input_tokens=u.input_tokens + u.cache_write_tokens + u.cache_read_tokens,
                      output_tokens=u.output_tokens)
        without += usage_cost(plain, price)
    models = sorted({u.model for u in counted})
    return PromptCacheSummary(
        requests=len(counted),
        requests_reading=sum(u.cache_read_tokens > 0 for u in counted),
        requests_writing=sum(u.cache_write_tokens > 0 and not u.cache_read_tokens for u in counted),
        uncached_input_tokens=sum(u.input_tokens for u in counted),
        cache_write_tokens=sum(u.cache_write_tokens for u in counted),
        cache_read_tokens=sum(u.cache_read_tokens for u in counted),
        cost_usd=with_cache,
        cost_without_caching_usd=without,
        break_even_reads=sum(break_even_reads(price_of(m, prices), cache_ttl) for m in models) / len(models),
    )


@dataclass(frozen=True, kw_only=True)
class LeverFigure:
    """One lever's rate as the cost model uses it, and whether it was measured or assumed (and how)."""

    lever: str
    value: float | None  # routing: None (a traffic mix, see `detail`)
    source: Source
    detail: str


def levers(
    workload: Workload,
    *,
    prompt_cache_hit_rate: float | None = None,
    prompt_cache_from: str = "",
    response_cache_hit_rate: float | None = None,
    response_cache_from: str = "",
    batch_share: float | None = None,
    batch_from: str = "",
    routing_mix: Mapping[str, float] | None = None,
    routing_from: str = "",
) -> tuple[Workload, dict[str, LeverFigure]]:
    """The workload with every measured rate put in, and each lever labelled.

    Each `*_hit_rate`, `batch_share` and `routing_mix` given is a measurement (say where from in
    the matching `*_from`); a lever left out keeps the workload's (typed-in) value and is "assumed".

    Raises:
        ValueError: a measured rate outside [0, 1], or a measurement without its source.
    """
    measured = {"prompt_caching": (prompt_cache_hit_rate, prompt_cache_from, "prompt_cache_hit_rate"),
                "response_cache": (response_cache_hit_rate, response_cache_from, "response_cache_hit_rate"),
                "batch": (batch_share, batch_from, "batch_share"),
                "routing": (routing_mix, routing_from, "routing_mix")}
    changes, figures = {}, {}
    for lever in LEVERS:
        value, source, field_name = measured[lever]
        if value is not None and not source:
            raise ValueError(f"the measured {lever} figure needs its source (e.g. {field_name[:6]}_from='traces')")
        if value is not None:
            changes[field_name] = dict(value) if lever == "routing" else value
        shown = changes.get(field_name, getattr(workload, field_name))
        detail = source if value is not None else "typed in (a slider or the Workload); not measured"
        if lever == "routing":
            mix = shown or {}
            detail = (", ".join(f"{m} {s:.0%}" for m, s in mix.items()) or "all on generation.model") + f"; {detail}"
            shown = None
        figures[lever] = LeverFigure(lever=lever, value=shown, source="measured" if value is not None else "assumed",
                                     detail=detail)
    return dataclasses.replace(workload, **changes), figures
