"""Frozen, keyword-only configs for every pipeline stage, TOML round-trips and a stable hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = [
    "ChunkingConfig",
    "EmbeddingConfig",
    "RetrievalConfig",
    "RerankingConfig",
    "RoutingConfig",
    "GenerationConfig",
    "EvaluationConfig",
    "PipelineConfig",
    "ResponseCacheConfig",
    "BudgetConfig",
    "ConfigError",
    "from_dict",
    "to_dict",
    "load_config",
    "save_config",
    "config_hash",
    "replace_path",
]

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and the fix."""


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {sorted(options)}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _literal_options(cls: type, name: str) -> tuple[str, ...]:
    return typing.get_args(_type_hints(cls)[name])


@dataclass(frozen=True, kw_only=True)
class ChunkingConfig:
    """How documents are split. Sizes are in tokens of `tokenizer`."""

    method: Literal["none", "fixed", "recursive", "semantic"] = "recursive"
    size: int = 256
    overlap: int = 0
    tokenizer: Literal["embedding", "whitespace", "claude"] = "embedding"
    breakpoint_percentile: float = 95.0

    def __post_init__(self) -> None:
        _choice("chunking.method", self.method, _literal_options(ChunkingConfig, "method"))
        _choice("chunking.tokenizer", self.tokenizer, _literal_options(ChunkingConfig, "tokenizer"))
        _positive("chunking.size", self.size)
        if not 0 <= self.overlap < self.size:
            raise ConfigError(
                f"chunking.overlap={self.overlap} must be >= 0 and < chunking.size={self.size}; "
                "lower the overlap or raise the size"
            )
        if not 0 < self.breakpoint_percentile < 100:
            raise ConfigError(
                f"chunking.breakpoint_percentile={self.breakpoint_percentile} must lie in (0, 100)"
            )


@dataclass(frozen=True, kw_only=True)
class EmbeddingConfig:
    """Which sentence-transformers model embeds chunks and queries, and how."""

    model: str = DEFAULT_EMBEDDING_MODEL
    batch_size: int = 32
    device: str = "cpu"
    normalize: bool = True

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ConfigError("embedding.model is empty; name a sentence-transformers model or path")
        _positive("embedding.batch_size", self.batch_size)


@dataclass(frozen=True, kw_only=True)
class RetrievalConfig:
    """First-stage retrieval. `k` is how many hits it returns (the reranker's candidates)."""

    kind: Literal["bm25", "dense", "hybrid"] = "hybrid"
    k: int = 100
    # BM25 (Okapi, rank_bm25 semantics) and its tokenizer
    bm25_k1: float = 1.5
    bm25_b: float = 0.75
    bm25_epsilon: float = 0.25
    lowercase: bool = True
    stopwords: Literal["english", "none"] = "english"
    stemmer: Literal["none", "english"] = "none"
    token_pattern: str = r"(?u)\b\w+\b"  # a term is a regex match
    # dense index
    index: Literal["flat", "hnsw"] = "flat"
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    hnsw_ef_construction: int = 200
    # hybrid fusion
    fusion: Literal["rrf", "weighted"] = "rrf"
    rrf_k: int = 60
    dense_weight: float = 0.5
    fusion_depth: int = 100

    def __post_init__(self) -> None:
        for name in ("kind", "stopwords", "stemmer", "index", "fusion"):
            _choice(f"retrieval.{name}", getattr(self, name), _literal_options(RetrievalConfig, name))
        _positive("retrieval.k", self.k)
        _positive("retrieval.rrf_k", self.rrf_k)
        _positive("retrieval.fusion_depth", self.fusion_depth)
        _positive("retrieval.hnsw_m", self.hnsw_m)
        _positive("retrieval.hnsw_ef_search", self.hnsw_ef_search)
        _positive("retrieval.hnsw_ef_construction", self.hnsw_ef_construction)
        try:
            re.compile(self.token_pattern)
        except re.error as exc:
            raise ConfigError(
                f"retrieval.token_pattern={self.token_pattern!r} is not a valid regular expression ({exc}); "
                "the default is r'(?u)\\b\\w\\w+\\b'"
            ) from None
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ConfigError(f"retrieval.dense_weight={self.dense_weight} must lie in [0, 1]")
        if not 0.0 <= self.bm25_b <= 1.0:
            raise ConfigError(f"retrieval.bm25_b={self.bm25_b} must lie in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class RerankingConfig:
    """Second stage: take `candidates` hits from retrieval, keep the best `k`."""

    kind: str = "none"
    candidates: int = 50
    k: int = 10
    model: str = ""
    max_length: int = 256
    batch_size: int = 32
    device: str = "cpu"
    mmr_lambda: float = 0.7
    # late interaction: which query tokens count, and IDF weights from the candidates
    # (defaults: the variant with the best worst case over Cranfield and the chunking set)
    maxsim_query_tokens: Literal["all", "content", "no-stopwords"] = "content"
    maxsim_idf: bool = False
    # weight of the input ranking fused (reciprocal rank) with the reranker's; 0 ignores it
    input_weight: float = 0.0

    def __post_init__(self) -> None:
        _positive("reranking.candidates", self.candidates)
        _positive("reranking.k", self.k)
        _positive("reranking.max_length", self.max_length)
        _positive("reranking.batch_size", self.batch_size)
        _choice(
            "reranking.maxsim_query_tokens",
            self.maxsim_query_tokens,
            _literal_options(RerankingConfig, "maxsim_query_tokens"),
        )
        if not 0.0 <= self.input_weight <= 1.0:
            raise ConfigError(f"reranking.input_weight={self.input_weight} must lie in [0, 1]")
        if self.kind != "none" and self.k > self.candidates:
            raise ConfigError(
                f"reranking.k={self.k} is larger than reranking.candidates={self.candidates}; "
                "a reranker can only reorder the candidates it is given"
            )
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ConfigError(f"reranking.mmr_lambda={self.mmr_lambda} must lie in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class RoutingConfig:
    """Which model answers a query. `fixed` always picks `model`.

    `tiers` run from cheapest to strongest. The other routers pick the cheapest tier whose
    estimated chance of being adequate reaches `threshold` (the cascade: whose answer's
    confidence reaches it); raising `threshold` buys quality with cost. `path` is a router
    saved by `LearnedRouter.save` / `RetrievalRouter.save` (kinds "learned", "retrieval").
    """

    kind: Literal["fixed", "rules", "learned", "retrieval", "cascade"] = "fixed"
    model: str = "claude-haiku-4-5"
    tiers: tuple[str, ...] = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5")
    path: str = ""
    threshold: float = 0.5
    # learned and retrieval-aware routers: the classifier fitted by `*Router.from_config(...).fit`
    # (a saved router keeps the classifier it was trained with)
    classifier: Literal["logistic", "knn"] = "logistic"
    knn_k: int = 15
    # rules router: one point per feature; more than `rule_cutoffs[i]` points send a query past tiers[i]
    long_query_tokens: int = 24
    rule_cutoffs: tuple[float, ...] = (1.0, 3.0)
    comparison_cues: tuple[str, ...] = (
        "compare", "comparison", "difference", "differ", "versus", "vs", "contrast", "both",
        "similar", "between",
    )
    reasoning_cues: tuple[str, ...] = (
        "why", "how", "explain", "reason", "reasons", "impact", "effect", "effects", "cause",
        "implications", "evaluate", "analyze", "analyse", "significance", "role",
    )
    # retrieval-aware router: how many hits it inspects, and how far apart two hits of one
    # document must start to count as different places
    retrieval_k: int = 10
    place_gap_chars: int = 2000

    def __post_init__(self) -> None:
        _choice("routing.kind", self.kind, _literal_options(RoutingConfig, "kind"))
        _choice("routing.classifier", self.classifier, _literal_options(RoutingConfig, "classifier"))
        if not self.model.strip():
            raise ConfigError("routing.model is empty; name a model from the price table")
        if not self.tiers:
            raise ConfigError("routing.tiers is empty; list model ids from cheapest to strongest")
        if len(set(self.tiers)) != len(self.tiers):
            raise ConfigError(f"routing.tiers={list(self.tiers)} repeats a model; list each tier once")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"routing.threshold={self.threshold} must lie in [0, 1]")
        _positive("routing.knn_k", self.knn_k)
        _positive("routing.long_query_tokens", self.long_query_tokens)
        _positive("routing.retrieval_k", self.retrieval_k)
        _positive("routing.place_gap_chars", self.place_gap_chars)
        if self.kind == "rules" and len(self.rule_cutoffs) != len(self.tiers) - 1:
            raise ConfigError(
                f"routing.rule_cutoffs={list(self.rule_cutoffs)} needs one cutoff per tier above the "
                f"cheapest ({len(self.tiers) - 1} for tiers {list(self.tiers)}); add or remove cutoffs"
            )
        if list(self.rule_cutoffs) != sorted(self.rule_cutoffs):
            raise ConfigError(f"routing.rule_cutoffs={list(self.rule_cutoffs)} must be non-decreasing")


@dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """How answers are produced from the top `context_chunks` hits."""

    kind: str = "extractive"
    model: str = "claude-haiku-4-5"
    max_tokens: int = 512
    temperature: float = 0.0
    context_chunks: int = 5
    prompt_caching: bool = True
    cache_ttl: Literal["5m", "1h"] = "5m"
    fallback_models: tuple[str, ...] = ()
    max_retries: int = 4
    timeout_s: float = 60.0
    # the system instructions ("" = the built-in prompt); the cached static prefix
    system_prompt: str = ""
    # Anthropic endpoint ("" = $ANTHROPIC_BASE_URL, else the SDK's default) and retry backoff
    base_url: str = ""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    # extractive generator: how many sentences, scored how
    extractive_sentences: int = 3
    extractive_scorer: Literal["embedding", "lexical"] = "embedding"
    # local model: context window (tokens) and CPU threads (0 = all cores)
    local_n_ctx: int = 4096
    local_threads: int = 0
    # share of requests sent through the Message Batches API (discounted, asynchronous); priced
    # by `workbench.costs.cost_per_query`
    batch_share: float = 0.0

    def __post_init__(self) -> None:
        _positive("generation.max_tokens", self.max_tokens)
        if not 0.0 <= self.batch_share <= 1.0:
            raise ConfigError(
                f"generation.batch_share={self.batch_share} must lie in [0, 1]: it is the share of "
                "requests sent through the batch API (0 = none, 1 = all)"
            )
        _positive("generation.context_chunks", self.context_chunks)
        _choice("generation.cache_ttl", self.cache_ttl, _literal_options(GenerationConfig, "cache_ttl"))
        _choice(
            "generation.extractive_scorer",
            self.extractive_scorer,
            _literal_options(GenerationConfig, "extractive_scorer"),
        )
        if self.max_retries < 0:
            raise ConfigError(f"generation.max_retries={self.max_retries} must be >= 0")
        _positive("generation.timeout_s", self.timeout_s)
        _positive("generation.extractive_sentences", self.extractive_sentences)
        _positive("generation.local_n_ctx", self.local_n_ctx)
        if self.local_threads < 0:
            raise ConfigError(f"generation.local_threads={self.local_threads} must be >= 0 (0 = all cores)")
        if not 0 <= self.backoff_base_s <= self.backoff_max_s:
            raise ConfigError(
                f"generation.backoff_base_s={self.backoff_base_s} must be >= 0 and <= "
                f"generation.backoff_max_s={self.backoff_max_s}"
            )
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"generation.base_url={self.base_url!r} must start with http:// or https://, "
                "or be empty for the default endpoint"
            )


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """Cut-offs for the metrics the experiment runner reports."""

    k: int = 10
    recall_k: int = 100
    span_k: int = 5

    def __post_init__(self) -> None:
        _positive("evaluation.k", self.k)
        _positive("evaluation.recall_k", self.recall_k)
        _positive("evaluation.span_k", self.span_k)


@dataclass(frozen=True, kw_only=True)
class ResponseCacheConfig:
    """Answer reuse in `Pipeline.answer`: "off", "exact" (normalised question) or "semantic"
    (embedding cosine >= `threshold`); entries older than `ttl_s` seconds are never served
    (0 = no expiry). `path` is the SQLite file ("" = `responses.sqlite` in the cache folder)."""

    mode: Literal["off", "exact", "semantic"] = "off"
    threshold: float = 0.9
    ttl_s: float = 86400.0
    path: str = ""

    def __post_init__(self) -> None:
        _choice("response_cache.mode", self.mode, _literal_options(ResponseCacheConfig, "mode"))
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(
                f"response_cache.threshold={self.threshold} must lie in [0, 1] (a cosine similarity); "
                "benchmarks/response_cache.py measures hit and wrong-hit rates per threshold"
            )
        if self.ttl_s < 0:
            raise ConfigError(f"response_cache.ttl_s={self.ttl_s} must be >= 0 (0 = entries never expire)")


@dataclass(frozen=True, kw_only=True)
class BudgetConfig:
    """Per-request token budget enforced when the prompt is assembled (0 = no limit).

    `context_tokens` caps the passages (lowest-ranked dropped first), `history_tokens` the
    conversation history; beyond it history is summarised by the generator or truncated
    (`history_overflow`). The output budget is `generation.max_tokens`.
    """

    context_tokens: int = 0
    history_tokens: int = 0
    history_overflow: Literal["truncate", "summarise"] = "truncate"

    def __post_init__(self) -> None:
        _choice("budget.history_overflow", self.history_overflow, _literal_options(BudgetConfig, "history_overflow"))
        for name in ("context_tokens", "history_tokens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"budget.{name}={getattr(self, name)} must be >= 0 (0 = no limit)")


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """One complete pipeline: every stage's config. `name` is a label, not part of the hash."""

    name: str = "default"
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    reranking: RerankingConfig = field(default_factory=RerankingConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    response_cache: ResponseCacheConfig = field(default_factory=ResponseCacheConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)


T = TypeVar("T")


def from_dict(cls: type[T], data: typing.Mapping[str, Any], *, where: str = "") -> T:
    """Build config dataclass `cls` from a mapping, rejecting unknown keys.

    Raises:
        ConfigError: an unknown key (the message lists the known ones) or a bad value.
    """
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"{where or cls.__name__} must be a table, got {type(data).__name__}")
    hints = _type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in {where or cls.__name__}; known keys are {sorted(known)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, where=path)  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(hint, value, path)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        return tuple(value)
    if origin is Literal:
        return value
    if origin in (typing.Union, types.UnionType):
        return value
    expected = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}.get(hint)
    if expected is not None:
        if isinstance(value, bool) and hint is not bool:
            raise ConfigError(f"{path} must be {hint.__name__}, got {value!r}")
        if not isinstance(value, expected):
            raise ConfigError(f"{path} must be {hint.__name__}, got {value!r}")
        return float(value) if hint is float else value
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain dicts and lists (tuples become lists, None values are dropped)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(config))


# Fields added after runs were stored under their config's hash: left out of the hash while
# they hold this default, so a config that does not use them keeps the hash it always had.
_HASHED_ONLY_WHEN_SET: Mapping[str, Any] = {
    "generation.batch_share": 0.0,
    "response_cache": dataclasses.asdict(ResponseCacheConfig()),
    "budget": dataclasses.asdict(BudgetConfig()),
}


def config_hash(config: PipelineConfig) -> str:
    """A stable content hash of a pipeline config (its `name` excluded), 16 hex characters.

    Fields added later (`_HASHED_ONLY_WHEN_SET`) count only when they differ from their default.
    """
    data = to_dict(config)
    data.pop("name", None)
    for dotted, default in _HASHED_ONLY_WHEN_SET.items():
        section, _, key = dotted.partition(".")
        if not key:  # a whole section
            if data[section] == default:
                del data[section]
        elif data[section][key] == default:
            del data[section][key]
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_config(path: str | Path) -> PipelineConfig:
    """Read a `PipelineConfig` from a TOML file.

    Raises:
        ConfigError: the file is missing, is not TOML, or holds unknown keys or bad values.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    return from_dict(PipelineConfig, data)


def dumps_config(config: PipelineConfig) -> str:
    """A config as TOML text."""
    import tomli_w

    return tomli_w.dumps(to_dict(config))


def save_config(config: PipelineConfig, path: str | Path) -> None:
    """Write a config to a TOML file atomically."""
    from .io import atomic_write_text

    atomic_write_text(Path(path), dumps_config(config))


def replace_path(config: T, dotted: str, value: Any) -> T:
    """A copy of `config` with the field at `dotted` (e.g. "chunking.size") set to `value`.

    Raises:
        ConfigError: the path names no field.
    """
    head, _, rest = dotted.partition(".")
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    if head not in names:
        raise ConfigError(
            f"{type(config).__name__} has no field {head!r} (in {dotted!r}); known: {sorted(names)}"
        )
    if rest:
        value = replace_path(getattr(config, head), rest, value)
    else:
        hint = _type_hints(type(config))[head]
        value = _coerce(hint, value, dotted)
    return dataclasses.replace(config, **{head: value})  # type: ignore[type-var]
