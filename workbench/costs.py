"""The cost model: what a workload of queries costs under a pipeline config, lever by lever.

Prices come from `workbench.prices` (the table as data) and token counts from
`workbench.tokens` (the API's count with a key, else offline estimates, labelled as such).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal

from .generation.base import SYSTEM_PROMPT
from .prices import PER_MILLION, ModelPrice, load_prices, price_of
from .tokens import TOKENS_PER_UNIT, calibration_factor, count_tokens

if TYPE_CHECKING:
    import pandas as pd

    from .config import PipelineConfig

__all__ = [
    "Workload",
    "CostBreakdown",
    "cost_per_query",
    "monthly_cost",
    "MIN_CACHEABLE_TOKENS",
    "LEVERS",
]

# Shortest prefix the API will cache, per model (Anthropic's prompt-caching documentation as
# known to the author; not checkable offline). A shorter prefix is sent but not cached.
MIN_CACHEABLE_TOKENS: Mapping[str, int] = {
    "claude-haiku-4-5": 4096,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-5": 4096,
}
DEFAULT_MIN_CACHEABLE_TOKENS = 1024

LEVERS = ("routing", "prompt_caching", "batch", "response_cache")


def _share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} must lie in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class Workload:
    """Traffic and prompt shape to price. Token counts are Claude tokens per LLM request.

    `None` fields are derived from the pipeline config: `system_tokens` from
    `generation.system_prompt` (or the built-in prompt), `chunk_tokens` from `chunking.size` (converted through
    `TOKENS_PER_UNIT`), `k` from `generation.context_chunks`, `batch_share` from
    `generation.batch_share` (the config is the source of truth; set it here only to override).
    `routing_mix` maps model ids to shares of traffic (default: all on `generation.model`);
    `baseline_model` is the model of the naive baseline (default `generation.model`).
    """

    queries_per_day: float = 1000.0
    days_per_month: float = 30.0
    system_tokens: int | None = None
    tool_tokens: int = 0
    query_tokens: int = 30
    chunk_tokens: int | None = None
    k: int | None = None
    history_turns: int = 0
    tokens_per_turn: int = 150
    output_tokens: int = 300
    prompt_cache_hit_rate: float = 0.0
    batch_share: float | None = None
    response_cache_hit_rate: float = 0.0
    routing_mix: Mapping[str, float] | None = None
    baseline_model: str | None = None

    def __post_init__(self) -> None:
        if self.queries_per_day < 0 or self.days_per_month <= 0:
            raise ValueError(
                f"queries_per_day={self.queries_per_day} must be >= 0 and days_per_month="
                f"{self.days_per_month} > 0"
            )
        for f in ("system_tokens", "tool_tokens", "query_tokens", "chunk_tokens", "k", "history_turns",
                  "tokens_per_turn", "output_tokens"):
            value = getattr(self, f)
            if value is not None and value < 0:
                raise ValueError(f"Workload.{f}={value} must be >= 0")
        for f in ("prompt_cache_hit_rate", "batch_share", "response_cache_hit_rate"):
            if getattr(self, f) is not None:
                _share(f"Workload.{f}", getattr(self, f))
        if self.routing_mix is not None:
            if not self.routing_mix or any(s < 0 for s in self.routing_mix.values()):
                raise ValueError(f"routing_mix={dict(self.routing_mix)} needs non-negative shares")
            if not math.isclose(sum(self.routing_mix.values()), 1.0, abs_tol=1e-6):
                raise ValueError(
                    f"routing_mix shares sum to {sum(self.routing_mix.values()):.6g}, not 1; "
                    "give each model its share of traffic"
                )


@dataclass(frozen=True, kw_only=True)
class CostBreakdown:
    """USD cost of a workload per `unit` ("query" or "month"), by token kind and by lever.

    `savings` maps each lever in `LEVERS` to what it saves, applied one after the other in
    that order starting from `naive_total` (all traffic on the baseline model, no prompt
    caching, no batching, no response cache), so `naive_total - sum(savings) == total`; a
    negative saving is a lever that costs more than it saves (e.g. cache writes never read).
    `tokens` are per LLM request; `token_sources` says for each whether it was "given",
    "estimate" (offline) or "counted" (the API's token counter).
    """

    unit: Literal["query", "month"]
    queries: float
    uncached_input: float
    cache_write: float
    cache_read: float
    output: float
    total: float
    naive_total: float
    savings: Mapping[str, float]
    by_model: Mapping[str, float]
    tokens: Mapping[str, float]
    token_sources: Mapping[str, str]
    notes: tuple[str, ...] = ()

    def scaled(self, unit: Literal["query", "month"], queries: float) -> CostBreakdown:
        """The same breakdown for `queries` queries per `unit`, from a per-query breakdown."""
        if self.unit != "query":
            raise ValueError(f"scale a per-query breakdown, not a per-{self.unit} one")
        money = {f.name: getattr(self, f.name) * queries for f in fields(self)
                 if f.name in ("uncached_input", "cache_write", "cache_read", "output", "total", "naive_total")}
        return replace(
            self, unit=unit, queries=queries, **money,
            savings={k: v * queries for k, v in self.savings.items()},
            by_model={k: v * queries for k, v in self.by_model.items()},
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per line item (token kinds, total, naive total, savings per lever): item, kind, usd."""
        import pandas as pd

        rows = [(name, "cost", getattr(self, name))
                for name in ("uncached_input", "cache_write", "cache_read", "output", "total")]
        rows.append(("naive_total", "baseline", self.naive_total))
        rows += [(lever, "saving", usd) for lever, usd in self.savings.items()]
        frame = pd.DataFrame(rows, columns=["item", "kind", "usd"])
        frame["unit"] = self.unit
        return frame


@dataclass(frozen=True)
class _Prompt:
    prefix: float  # static, cacheable: system prompt + tools
    variable: float  # chunks, history, question
    output: float


def _request_costs(
    prompt: _Prompt, mix: Mapping[str, float], prices: Mapping[str, ModelPrice], *, caching: bool,
    ttl: str, hit_rate: float, batch_share: float, response_hits: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """Cost components per query (averaged over the mix) and the total per model."""
    parts = dict.fromkeys(("uncached_input", "cache_write", "cache_read", "output"), 0.0)
    by_model: dict[str, float] = {}
    for model, share in mix.items():
        price = price_of(model, prices)
        cached = caching and prompt.prefix >= MIN_CACHEABLE_TOKENS.get(model, DEFAULT_MIN_CACHEABLE_TOKENS)
        scale = share * (1 - response_hits) * (1 - batch_share * price.batch_discount) / PER_MILLION
        these = {
            "uncached_input": (prompt.variable + (0 if cached else prompt.prefix)) * price.input,
            "cache_write": (1 - hit_rate) * prompt.prefix * price.cache_write(ttl) if cached else 0.0,
            "cache_read": hit_rate * prompt.prefix * price.cache_read if cached else 0.0,
            "output": prompt.output * price.output,
        }
        for name, value in these.items():
            parts[name] += value * scale
        by_model[model] = by_model.get(model, 0.0) + sum(these.values()) * scale
    return parts, by_model


def _prompt_tokens(config: PipelineConfig, workload: Workload) -> tuple[_Prompt, dict[str, str]]:
    sources: dict[str, str] = {}
    if workload.system_tokens is None:
        counted = count_tokens(config.generation.system_prompt or SYSTEM_PROMPT, model=config.generation.model)
        system, sources["system_tokens"] = counted.tokens, "counted" if counted.counted else "estimate"
    else:
        system, sources["system_tokens"] = workload.system_tokens, "given"
    if workload.chunk_tokens is None:
        if config.chunking.method == "none":
            raise ValueError(
                "chunking.method='none' keeps whole documents, so there is no chunk size to price; "
                "set Workload.chunk_tokens to the typical document length in tokens"
            )
        chunk = config.chunking.size * TOKENS_PER_UNIT[config.chunking.tokenizer] * calibration_factor()
        sources["chunk_tokens"] = "estimate"
    else:
        chunk, sources["chunk_tokens"] = workload.chunk_tokens, "given"
    k = config.generation.context_chunks if workload.k is None else workload.k
    variable = k * chunk + workload.history_turns * workload.tokens_per_turn + workload.query_tokens
    return _Prompt(prefix=system + workload.tool_tokens, variable=variable, output=workload.output_tokens), sources


def cost_per_query(
    config: PipelineConfig, workload: Workload, *, prices: Mapping[str, ModelPrice] | None = None
) -> CostBreakdown:
    """Expected USD cost of one query of `workload` under `config`, with savings per lever.

    Prompt caching (from `config.generation.prompt_caching` and `cache_ttl`) covers the static
    prefix (system prompt + tools): a share `prompt_cache_hit_rate` of LLM requests read it,
    the rest write it; a prefix below the model's `MIN_CACHEABLE_TOKENS` is not cached at all.
    A share `generation.batch_share` of requests (or `Workload.batch_share`, when set) gets the
    batch discount; response-cache hits cost no LLM tokens.

    Args:
        config: the pipeline (chunk size, context chunks, model, caching settings).
        workload: traffic and prompt shape.
        prices: prices by model; default `load_prices()`.

    Raises:
        PriceError: a model of the mix or the baseline has no price.
        ValueError: the token counts cannot be derived (see `Workload`).
    """
    prices = load_prices() if prices is None else prices
    gen = config.generation
    prompt, sources = _prompt_tokens(config, workload)
    mix = dict(workload.routing_mix) if workload.routing_mix is not None else {gen.model: 1.0}
    baseline = {workload.baseline_model or gen.model: 1.0}
    batch_share = gen.batch_share if workload.batch_share is None else workload.batch_share

    def run(which: Mapping[str, float], caching: bool, batch: float, hits: float):
        return _request_costs(prompt, which, prices, caching=caching, ttl=gen.cache_ttl,
                              hit_rate=workload.prompt_cache_hit_rate, batch_share=batch, response_hits=hits)

    steps = [
        run(baseline, False, 0.0, 0.0),
        run(mix, False, 0.0, 0.0),
        run(mix, gen.prompt_caching, 0.0, 0.0),
        run(mix, gen.prompt_caching, batch_share, 0.0),
        run(mix, gen.prompt_caching, batch_share, workload.response_cache_hit_rate),
    ]
    totals = [sum(parts.values()) for parts, _ in steps]
    parts, by_model = steps[-1]
    notes = tuple(
        f"prefix of {prompt.prefix:.0f} tokens is below the {MIN_CACHEABLE_TOKENS.get(m, DEFAULT_MIN_CACHEABLE_TOKENS)}"
        f"-token minimum that {m} caches; prompt caching has no effect there"
        for m in mix
        if gen.prompt_caching and prompt.prefix < MIN_CACHEABLE_TOKENS.get(m, DEFAULT_MIN_CACHEABLE_TOKENS)
    )
    return CostBreakdown(
        unit="query",
        queries=1.0,
        **parts,
        total=totals[-1],
        naive_total=totals[0],
        savings={lever: totals[i] - totals[i + 1] for i, lever in enumerate(LEVERS)},
        by_model=by_model,
        tokens={"prefix": prompt.prefix, "variable": prompt.variable, "output": prompt.output},
        token_sources=sources,
        notes=notes,
    )


def monthly_cost(
    config: PipelineConfig, workload: Workload, *, prices: Mapping[str, ModelPrice] | None = None
) -> CostBreakdown:
    """`cost_per_query` scaled to a month: `queries_per_day x days_per_month` queries."""
    queries = workload.queries_per_day * workload.days_per_month
    return cost_per_query(config, workload, prices=prices).scaled("month", queries)
