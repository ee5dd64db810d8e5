"""The config dataclass of every pipeline stage (a section of a config's TOML) and `PipelineConfig`.

Frozen and keyword-only; each field that takes a number declares its range (`number`), and
every `__post_init__` checks types, ranges and kinds (`_check`) before the cross-field rules.
Kinds typed `str` are checked against the stage registries (`workbench.registry`); Literal
fields against their options. Loading, hashing and dotted paths live in `workbench.config`,
which re-exports these classes.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .registry import REGISTRIES
from .validation import MAX_NAME_CHARS, ConfigError, check_fields, check_token_pattern, number, shorten, text

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_ANSWER_MODEL",
    "ChunkingConfig",
    "EmbeddingConfig",
    "RetrievalConfig",
    "RerankingConfig",
    "RoutingConfig",
    "GenerationConfig",
    "EvaluationConfig",
    "ResponseCacheConfig",
    "BudgetConfig",
    "PipelineConfig",
    "field_types",
]

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_ANSWER_MODEL = "claude-haiku-4-5"


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"unknown {name} {shorten(value)}; choose one of {sorted(options)}")


def _check(config: Any, section: str) -> None:
    """Every field's type and range, then every Literal and registry kind against its options."""
    check_fields(config, section)
    for name, hint in field_types(type(config)).items():
        path = f"{section}.{name}"
        if path in REGISTRIES:
            REGISTRIES[path].check(getattr(config, name))
        elif typing.get_origin(hint) is Literal:
            _choice(path, getattr(config, name), typing.get_args(hint))


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a config dataclass (memoised)."""
    return typing.get_type_hints(cls)


@dataclass(frozen=True, kw_only=True)
class ChunkingConfig:
    """How documents are split. Sizes are in tokens of `tokenizer`. `method`: see `choices`."""

    method: str = "recursive"
    size: int = number(256, ge=1, le=1_000_000)
    overlap: int = number(0, ge=0)
    tokenizer: Literal["embedding", "whitespace", "claude"] = "embedding"
    breakpoint_percentile: float = number(95.0, gt=0, lt=100)

    def __post_init__(self) -> None:
        _check(self, "chunking")
        if not 0 <= self.overlap < self.size:
            raise ConfigError(
                f"chunking.overlap={self.overlap} must be >= 0 and < chunking.size={self.size}; "
                "lower the overlap or raise the size"
            )


@dataclass(frozen=True, kw_only=True)
class EmbeddingConfig:
    """Which sentence-transformers model embeds chunks and queries, and how."""

    model: str = text(DEFAULT_EMBEDDING_MODEL)
    batch_size: int = number(32, ge=1, le=65_536)
    device: str = text("cpu", max_chars=64)
    normalize: bool = True

    def __post_init__(self) -> None:
        _check(self, "embedding")
        if not self.model.strip():
            raise ConfigError("embedding.model is empty; name a sentence-transformers model or path")


@dataclass(frozen=True, kw_only=True)
class RetrievalConfig:
    """First-stage retrieval. `k` is how many hits it returns (the reranker's candidates)."""

    kind: str = "hybrid"
    k: int = number(100, gt=0, le=1_000_000)
    # BM25 (Okapi, rank_bm25 semantics) and its tokenizer
    bm25_k1: float = number(1.5, ge=0, le=100, hint="the usual range is 1.2 to 2.0")
    bm25_b: float = number(0.75, ge=0, le=1, hint="0 = no length normalisation, 1 = full")
    bm25_epsilon: float = number(0.25, ge=0, le=1, hint="the floor of negative idfs, as a share of the mean idf")
    lowercase: bool = True
    stopwords: Literal["english", "none"] = "english"
    stemmer: Literal["none", "english"] = "none"
    token_pattern: str = r"(?u)\b\w+\b"  # a term is a regex match
    # dense index: which vector database holds it (workbench.vectorstores) and how it searches;
    # "flat" is exact, "hnsw" and "ivfflat" approximate (each backend lists the kinds it has)
    backend: str = "faiss"
    backend_url: str = text("")  # a server (postgresql://, http://host:port); "" = embedded
    index: Literal["flat", "hnsw", "ivfflat"] = "flat"
    hnsw_m: int = number(32, gt=0, le=1024)
    hnsw_ef_search: int = number(128, gt=0, le=1_000_000)
    hnsw_ef_construction: int = number(200, gt=0, le=1_000_000)
    ivf_lists: int = number(0, ge=0, le=1_000_000, hint="0 = about the square root of the row count")
    ivf_probes: int = number(20, gt=0, le=1_000_000)
    index_path: str = text("")  # a persistent index folder (`workbench ingest`) searched instead of building one
    # hybrid fusion
    fusion: Literal["rrf", "weighted"] = "rrf"
    rrf_k: int = number(60, gt=0)
    dense_weight: float = number(0.5, ge=0, le=1)
    fusion_depth: int = number(100, gt=0, le=1_000_000)

    def __post_init__(self) -> None:
        _check(self, "retrieval")
        check_token_pattern(self.token_pattern)


@dataclass(frozen=True, kw_only=True)
class RerankingConfig:
    """Second stage: take `candidates` hits from retrieval, keep the best `k`."""

    kind: str = "none"
    candidates: int = number(50, gt=0, le=100_000)
    k: int = number(10, gt=0, le=100_000)
    model: str = text("")
    max_length: int = number(256, gt=0, le=65_536)
    batch_size: int = number(32, gt=0, le=65_536)
    device: str = text("cpu", max_chars=64)
    mmr_lambda: float = number(0.7, ge=0, le=1)
    # late interaction: which query tokens count, and IDF weights from the candidates
    # (defaults: the variant with the best worst case over Cranfield and the chunking set)
    maxsim_query_tokens: Literal["all", "content", "no-stopwords"] = "content"
    maxsim_idf: bool = False
    # weight of the input ranking fused (reciprocal rank) with the reranker's; 0 ignores it
    input_weight: float = number(0.0, ge=0, le=1)

    def __post_init__(self) -> None:
        _check(self, "reranking")
        if self.kind != "none" and self.k > self.candidates:
            raise ConfigError(
                f"reranking.k={self.k} is larger than reranking.candidates={self.candidates}; "
                "a reranker can only reorder the candidates it is given"
            )


@dataclass(frozen=True, kw_only=True)
class RoutingConfig:
    """Which model answers a query. `fixed` always picks `generation.model` (the one field
    naming the answering model).

    `tiers` run from cheapest to strongest. The other routers pick the cheapest tier whose
    estimated chance of being adequate reaches `threshold` (the cascade: whose answer's
    confidence reaches it); raising `threshold` buys quality with cost. `path` is a router
    saved by `LearnedRouter.save` / `RetrievalRouter.save` (kinds "learned", "retrieval").
    """

    kind: str = "fixed"
    tiers: tuple[str, ...] = dataclasses.field(
        default=("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"), metadata={"max_chars": MAX_NAME_CHARS})
    path: str = text("")
    threshold: float = number(0.5, ge=0, le=1)
    # learned and retrieval-aware routers: the classifier fitted by `*Router.from_config(...).fit`
    # (a saved router keeps the classifier it was trained with)
    classifier: Literal["logistic", "knn"] = "logistic"
    knn_k: int = number(15, gt=0, le=100_000)
    # rules router: one point per feature; more than `rule_cutoffs[i]` points send a query past tiers[i]
    long_query_tokens: int = number(24, gt=0)
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
    retrieval_k: int = number(10, gt=0, le=100_000)
    place_gap_chars: int = number(2000, gt=0)

    def __post_init__(self) -> None:
        _check(self, "routing")
        if not self.tiers:
            raise ConfigError("routing.tiers is empty; list model ids from cheapest to strongest")
        if len(set(self.tiers)) != len(self.tiers):
            raise ConfigError(f"routing.tiers={shorten(list(self.tiers))} repeats a model; list each tier once")
        if self.kind == "rules" and len(self.rule_cutoffs) != len(self.tiers) - 1:
            raise ConfigError(
                f"routing.rule_cutoffs={list(self.rule_cutoffs)} needs one cutoff per tier above the "
                f"cheapest ({len(self.tiers) - 1} for tiers {shorten(list(self.tiers))}); add or remove cutoffs"
            )
        if list(self.rule_cutoffs) != sorted(self.rule_cutoffs):
            raise ConfigError(f"routing.rule_cutoffs={shorten(list(self.rule_cutoffs))} must be non-decreasing")


@dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """How answers are produced from the top `context_chunks` hits; `model` answers them
    (the fixed router's choice; other routers pick among `routing.tiers`)."""

    kind: str = "extractive"
    model: str = text(DEFAULT_ANSWER_MODEL)
    max_tokens: int = number(512, gt=0, le=1_000_000)
    temperature: float = number(0.0, ge=0, le=2)
    context_chunks: int = number(5, gt=0, le=10_000)
    prompt_caching: bool = True
    cache_ttl: Literal["5m", "1h"] = "5m"
    fallback_models: tuple[str, ...] = dataclasses.field(default=(), metadata={"max_chars": MAX_NAME_CHARS})
    max_retries: int = number(4, ge=0, le=100)
    timeout_s: float = number(60.0, gt=0, le=86_400, hint="seconds per API request")
    # the system instructions ("" = the built-in prompt); the cached static prefix
    system_prompt: str = ""
    # Anthropic endpoint ("" = $ANTHROPIC_BASE_URL, else the SDK's default) and retry backoff
    base_url: str = text("")
    backoff_base_s: float = number(0.5, ge=0, le=86_400)
    backoff_max_s: float = number(30.0, ge=0, le=86_400)
    # extractive generator: how many sentences, scored how
    extractive_sentences: int = number(3, gt=0, le=10_000)
    extractive_scorer: Literal["embedding", "lexical"] = "embedding"
    # local model: context window (tokens) and CPU threads (0 = all cores)
    local_n_ctx: int = number(4096, gt=0, le=1_048_576)
    local_threads: int = number(0, ge=0, le=4096, hint="0 = all cores")
    # share of requests sent through the Message Batches API (discounted, asynchronous); priced
    # by `workbench.costs.cost_per_query`
    batch_share: float = number(0.0, ge=0, le=1, hint=(
        "it is the share of requests sent through the batch API (0 = none, 1 = all)"))

    def __post_init__(self) -> None:
        _check(self, "generation")
        if not self.model.strip():
            raise ConfigError("generation.model is empty; name a model from the price table")
        if not self.backoff_base_s <= self.backoff_max_s:
            raise ConfigError(
                f"generation.backoff_base_s={self.backoff_base_s} must be >= 0 and <= "
                f"generation.backoff_max_s={self.backoff_max_s}"
            )
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"generation.base_url={shorten(self.base_url)} must start with http:// or https://, "
                "or be empty for the default endpoint"
            )


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """Cut-offs for the metrics the experiment runner reports."""

    k: int = number(10, gt=0, le=1_000_000)
    recall_k: int = number(100, gt=0, le=1_000_000)
    span_k: int = number(5, gt=0, le=1_000_000)

    def __post_init__(self) -> None:
        _check(self, "evaluation")


@dataclass(frozen=True, kw_only=True)
class ResponseCacheConfig:
    """Answer reuse in `Pipeline.answer`: "off", "exact" (normalised question) or "semantic"
    (embedding cosine >= `threshold`); entries older than `ttl_s` seconds are never served
    (0 = no expiry). `path` is the SQLite file ("" = `responses.sqlite` in the cache folder)."""

    mode: Literal["off", "exact", "semantic"] = "off"
    # 0.85: the lowest threshold with at most 1% wrong hits on both bundled query logs (benchmarks/response_cache.py)
    threshold: float = number(0.85, ge=0, le=1, hint=(
        "a cosine similarity; benchmarks/response_cache.py measures hit and wrong-hit rates per threshold"))
    ttl_s: float = number(86400.0, ge=0, le=10 * 365 * 86400, hint="seconds; 0 = entries never expire")
    path: str = text("")

    def __post_init__(self) -> None:
        _check(self, "response_cache")


@dataclass(frozen=True, kw_only=True)
class BudgetConfig:
    """Per-request token budget enforced when the prompt is assembled (0 = no limit).

    `context_tokens` caps the question and its passages (lowest-ranked dropped first), `history_tokens` the
    conversation history; beyond it history is summarised by the generator or truncated
    (`history_overflow`). The output budget is `generation.max_tokens`.
    """

    context_tokens: int = number(0, ge=0, le=10_000_000, hint="0 = no limit")
    history_tokens: int = number(0, ge=0, le=10_000_000, hint="0 = no limit")
    history_overflow: Literal["truncate", "summarise"] = "truncate"

    def __post_init__(self) -> None:
        _check(self, "budget")


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

    def __post_init__(self) -> None:
        check_fields(self, "")  # the name; each section checked itself
