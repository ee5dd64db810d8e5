"""What answers cost: the dated price table as data, token estimates, and a cost model.

Prices live in `data/prices.toml` (USD per million tokens); `WORKBENCH_PRICES` points at a
copy to add models or override prices without touching code. Token counts come from the
Anthropic API's token counter when `ANTHROPIC_API_KEY` is set, else from an offline estimate
(the legacy Claude tokenizer times a calibration factor), always labelled as such.

Calibration: `CALIBRATION_FACTOR` is 1.0, i.e. no correction. It is an assumption, not a
measurement: Anthropic states the legacy (Claude 2) tokenizer is not exact for Claude 3 and
later, and no real Claude count can be taken offline, so its error is unknown. With a key,
`calibrate(texts, [count_tokens(t).tokens for t in texts])` measures the factor and its error;
set `WORKBENCH_TOKEN_CALIBRATION` to the measured factor to use it everywhere.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .io import DATA_DIR
from .types import Usage

if TYPE_CHECKING:
    import pandas as pd

    from .config import PipelineConfig

__all__ = [
    "ModelPrice",
    "PriceSheet",
    "PriceError",
    "load_prices",
    "load_price_sheet",
    "price_of",
    "usage_cost",
    "estimate_tokens",
    "calibration_factor",
    "TokenCount",
    "count_tokens",
    "Calibration",
    "calibrate",
    "Workload",
    "CostBreakdown",
    "cost_per_query",
    "monthly_cost",
    "PRICES_PATH",
    "CALIBRATION_FACTOR",
    "TOKENS_PER_UNIT",
    "MIN_CACHEABLE_TOKENS",
    "LEVERS",
]

log = logging.getLogger(__name__)

PRICES_PATH = DATA_DIR / "prices.toml"
TOKENIZER_PATH = DATA_DIR / "claude_tokenizer" / "tokenizer.json"
PER_MILLION = 1_000_000
CALIBRATION_FACTOR = 1.0  # assumed, unverified: see the module docstring

# Legacy-Claude tokens per unit of each chunking tokenizer, measured on the bundled chunking
# corpora (chatlogs, state_of_the_union, wikitexts; 206,423 characters): 45,773 legacy tokens
# against 43,913 all-MiniLM-L6-v2 WordPiece tokens (per-corpus 0.96-1.09) and 36,842
# whitespace words (per-corpus 1.17-1.36). `benchmarks/cost_model.py` recomputes them.
TOKENS_PER_UNIT: Mapping[str, float] = {"claude": 1.0, "embedding": 1.04, "whitespace": 1.24}

# Shortest prefix the API will cache, per model (Anthropic's prompt-caching documentation as
# known to the author; not checkable offline). A shorter prefix is sent but not cached.
MIN_CACHEABLE_TOKENS: Mapping[str, int] = {
    "claude-haiku-4-5": 4096,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-5": 4096,
}
DEFAULT_MIN_CACHEABLE_TOKENS = 1024

LEVERS = ("routing", "prompt_caching", "batch", "response_cache")
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
            f"no price for model {model!r}; known models are {sorted(prices)}. "
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


# --- token counts ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _legacy_tokenizer():  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TOKENIZER_PATH))


@functools.lru_cache(maxsize=65_536)  # studies price the same chunk texts under many settings
def _legacy_count(text: str) -> int:
    return len(_legacy_tokenizer().encode(text, add_special_tokens=False).ids) if text else 0


def calibration_factor() -> float:
    """The factor applied to legacy-tokenizer counts: `$WORKBENCH_TOKEN_CALIBRATION` or 1.0.

    Raises:
        ValueError: the variable is not a positive number.
    """
    raw = os.environ.get("WORKBENCH_TOKEN_CALIBRATION")
    if raw is None:
        return CALIBRATION_FACTOR
    try:
        factor = float(raw)
    except ValueError:
        factor = -1.0
    if not factor > 0 or math.isinf(factor):
        raise ValueError(f"WORKBENCH_TOKEN_CALIBRATION={raw!r} must be a positive number such as 1.1")
    return factor


def estimate_tokens(text: str) -> int:
    """Offline estimate of the Claude tokens in `text`: legacy tokenizer x calibration factor."""
    return round(_legacy_count(text) * calibration_factor())


@dataclass(frozen=True, kw_only=True)
class TokenCount:
    """A token count and whether the API counted it (True) or it is an offline estimate."""

    tokens: int
    counted: bool


def count_tokens(text: str, *, model: str = "claude-haiku-4-5") -> TokenCount:
    """Tokens of `text` sent as one user message: the API's count with a key, else an estimate.

    With `ANTHROPIC_API_KEY` set (and `ANTHROPIC_BASE_URL` if any) the Messages token counter
    answers; its count includes the few tokens of message framing, which are billed too. When
    the call fails the offline estimate is returned, labelled `counted=False`.
    """
    if not text:
        return TokenCount(tokens=0, counted=False)
    if os.environ.get("ANTHROPIC_API_KEY"):
        import anthropic

        try:
            tokens = _api_count(text, model, os.environ.get("ANTHROPIC_BASE_URL", ""))
            return TokenCount(tokens=tokens, counted=True)
        except anthropic.AnthropicError as exc:
            log.warning("token counting through the API failed (%s); using the offline estimate",
                        type(exc).__name__)
    return TokenCount(tokens=estimate_tokens(text), counted=False)


@functools.lru_cache(maxsize=256)
def _api_count(text: str, model: str, base_url: str) -> int:
    """The API's count, remembered per process (a cost sweep asks for the same texts again)."""
    from .generation import anthropic_client

    result = anthropic_client(base_url=base_url or None, max_retries=2).messages.count_tokens(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return int(result.input_tokens)


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """A measured calibration: the factor, and relative errors of calibrated estimates."""

    factor: float
    mean_abs_error: float
    max_abs_error: float
    n: int


def calibrate(texts: Sequence[str], counts: Sequence[int]) -> Calibration:
    """Fit the factor that maps legacy-tokenizer counts onto real counts (ratio of sums).

    Args:
        texts: sample texts, ideally like the ones being priced.
        counts: the real token count of each text (e.g. `count_tokens(t).tokens` with a key).

    Raises:
        ValueError: lengths differ, or no text has any tokens.
    """
    if len(texts) != len(counts):
        raise ValueError(f"{len(texts)} texts but {len(counts)} counts; give one count per text")
    legacy = [_legacy_count(t) for t in texts]
    pairs = [(est, real) for est, real in zip(legacy, counts) if est > 0 and real > 0]
    if not pairs:
        raise ValueError("calibrate needs at least one non-empty text with a positive count")
    factor = sum(r for _, r in pairs) / sum(e for e, _ in pairs)
    errors = [abs(e * factor - r) / r for e, r in pairs]
    return Calibration(factor=factor, mean_abs_error=sum(errors) / len(errors), max_abs_error=max(errors),
                       n=len(pairs))


# --- the cost model -----------------------------------------------------------------------------


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
        from .generation import SYSTEM_PROMPT

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
