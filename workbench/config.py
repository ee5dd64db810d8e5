"""Frozen, keyword-only configs for every pipeline stage, TOML round-trips and a stable hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from .registry import REGISTRIES
from .validation import Bounds, ConfigError, bounds_of, check_fields, check_token_pattern, number, shorten

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
    "loads",
    "save_config",
    "config_hash",
    "replace_path",
    "replace_paths",
    "choices",
    "field_bounds",
    "shorten",
]

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_ANSWER_MODEL = "claude-haiku-4-5"


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"unknown {name} {shorten(value)}; choose one of {sorted(options)}")


def _check(config: Any, section: str) -> None:
    """Every field's type and range, then every Literal and registry kind against its options."""
    check_fields(config, section)
    for name, hint in _type_hints(type(config)).items():
        path = f"{section}.{name}"
        if path in REGISTRIES:
            REGISTRIES[path].check(getattr(config, name))
        elif typing.get_origin(hint) is Literal:
            _choice(path, getattr(config, name), typing.get_args(hint))


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
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

    model: str = DEFAULT_EMBEDDING_MODEL
    batch_size: int = number(32, ge=1, le=65_536)
    device: str = "cpu"
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
    backend_url: str = ""  # a server (postgresql://, http://host:port); "" = embedded
    index: Literal["flat", "hnsw", "ivfflat"] = "flat"
    hnsw_m: int = number(32, gt=0, le=1024)
    hnsw_ef_search: int = number(128, gt=0, le=1_000_000)
    hnsw_ef_construction: int = number(200, gt=0, le=1_000_000)
    ivf_lists: int = number(0, ge=0, le=1_000_000, hint="0 = about the square root of the row count")
    ivf_probes: int = number(10, gt=0, le=1_000_000)
    index_path: str = ""  # a persistent index folder (`workbench ingest`) searched instead of building one
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
    model: str = ""
    max_length: int = number(256, gt=0, le=65_536)
    batch_size: int = number(32, gt=0, le=65_536)
    device: str = "cpu"
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
    tiers: tuple[str, ...] = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5")
    path: str = ""
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
    model: str = DEFAULT_ANSWER_MODEL
    max_tokens: int = number(512, gt=0, le=1_000_000)
    temperature: float = number(0.0, ge=0, le=2)
    context_chunks: int = number(5, gt=0, le=10_000)
    prompt_caching: bool = True
    cache_ttl: Literal["5m", "1h"] = "5m"
    fallback_models: tuple[str, ...] = ()
    max_retries: int = number(4, ge=0, le=100)
    timeout_s: float = number(60.0, gt=0, le=86_400, hint="seconds per API request")
    # the system instructions ("" = the built-in prompt); the cached static prefix
    system_prompt: str = ""
    # Anthropic endpoint ("" = $ANTHROPIC_BASE_URL, else the SDK's default) and retry backoff
    base_url: str = ""
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
    threshold: float = 0.9
    ttl_s: float = 86400.0
    path: str = ""

    def __post_init__(self) -> None:
        _check(self, "response_cache")
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
        _check(self, "budget")
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
    if cls is PipelineConfig:
        data = _upgrade(data)
    hints = _type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {shorten(unknown)} in {where or cls.__name__}; known keys are {sorted(known)}"
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


# Keys that moved: old dotted path -> the field that replaced it. Files using the old key still load.
RENAMED: Mapping[str, str] = {"routing.model": "generation.model"}


def _upgrade(data: typing.Mapping[str, Any]) -> dict[str, Any]:
    """Map renamed keys to their new place; refuse an old and a new key that disagree."""
    data = {k: dict(v) if isinstance(v, typing.Mapping) else v for k, v in data.items()}
    for old, new in RENAMED.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        section, target = data.get(old_section), data.setdefault(new_section, {})
        if not (isinstance(section, dict) and old_key in section and isinstance(target, dict)):
            continue
        value = section.pop(old_key)
        if section.get("kind", "fixed") != "fixed":
            continue  # only the fixed router read the old key
        if target.get(new_key, value) != value:
            raise ConfigError(
                f"{old}={shorten(value)} and {new}={shorten(target[new_key])} disagree: {new} is now the one "
                f"field naming the answering model; delete {old} and keep the model you mean in {new}"
            )
        target[new_key] = value
    return data


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """TOML values into field types: lists into tuples, integers into floats (types are checked later)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {shorten(value)}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if abs(value) < 2**1023 else value
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
    "retrieval.backend": "faiss",
    "retrieval.backend_url": "",
    "retrieval.ivf_lists": 0,
    "retrieval.ivf_probes": 10,
    "retrieval.index_path": "",
    "response_cache": dataclasses.asdict(ResponseCacheConfig()),
    "budget": dataclasses.asdict(BudgetConfig()),
}


def config_hash(config: PipelineConfig) -> str:
    """A stable content hash of a pipeline config (its `name` excluded), 16 hex characters.

    Fields added later (`_HASHED_ONLY_WHEN_SET`) count only when they differ from their default.
    """
    data = to_dict(config)
    data.pop("name", None)
    data["routing"]["model"] = data["generation"]["model"]  # hashed where it was before `RENAMED`
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
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {shorten(str(path))} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {shorten(str(path))} is a folder; name a .toml file") from None
    return loads(data, source=str(path))


def loads(data: bytes | str, *, source: str = "config.toml") -> PipelineConfig:
    """A `PipelineConfig` from TOML bytes or text; `source` (its file name) names it in messages,
    and its stem is the config's name unless the TOML sets one.

    Raises:
        ConfigError: not UTF-8, not TOML, unknown keys or bad values.
    """
    name = shorten(source)
    try:
        table = tomllib.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{name} is not a UTF-8 TOML file (byte {exc.start} is not UTF-8); save it as UTF-8 text"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {name} is not valid TOML: {shorten(str(exc), 200)}") from None
    except RecursionError:
        raise ConfigError(f"config file {name} nests arrays or tables too deeply to be a config") from None
    table.setdefault("name", Path(source).stem)
    return from_dict(PipelineConfig, table)


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
    if isinstance(config, PipelineConfig):
        dotted = RENAMED.get(dotted, dotted)
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


def replace_paths(config: T, changes: Mapping[str, Any]) -> T:
    """A copy of `config` with every dotted field of `changes` set at once.

    A stage's fields are set together, so fields checked against each other (chunking.size
    and chunking.overlap) may change together where a step between them would be invalid.

    Raises:
        ConfigError: a path that names no field, or a bad value or combination.
    """
    by_stage: dict[str, dict[str, Any]] = {}
    if isinstance(config, PipelineConfig):
        changes = {RENAMED.get(k, k): v for k, v in changes.items()}
    for dotted, value in changes.items():
        head, _, rest = dotted.partition(".")
        if rest and "." not in rest and dataclasses.is_dataclass(getattr(config, head, None)):
            by_stage.setdefault(head, {})[rest] = value
        else:  # a top-level field, deeper nesting or no such field: one at a time
            config = replace_path(config, dotted, value)
    for head, fields in by_stage.items():
        stage = getattr(config, head)
        config = dataclasses.replace(config, **{head: from_dict(type(stage), {**to_dict(stage), **fields}, where=head)})
    return config


def _field(path: str) -> tuple[type, str]:
    section, _, name = path.partition(".")
    hints = _type_hints(PipelineConfig)
    cls = hints.get(section)
    if not (dataclasses.is_dataclass(cls) and name in _type_hints(cls)):  # type: ignore[arg-type]
        raise ConfigError(f"no config field {shorten(path)}; write it as section.field, e.g. 'retrieval.kind'")
    return cls, name  # type: ignore[return-value]


def choices(path: str) -> tuple[str, ...] | None:
    """The values field `path` (e.g. "retrieval.kind") accepts, sorted: the stage registry's kinds
    or the Literal's options; None for a free field (a number, a model name...).

    Raises:
        ConfigError: `path` names no config field.
    """
    cls, name = _field(path)
    if path in REGISTRIES:
        return REGISTRIES[path].choices()
    hint = _type_hints(cls)[name]
    return tuple(sorted(typing.get_args(hint))) if typing.get_origin(hint) is Literal else None


def field_bounds(path: str) -> Bounds | None:
    """The valid range of numeric field `path` (e.g. "retrieval.bm25_b"); None for other fields.

    Raises:
        ConfigError: `path` names no config field.
    """
    cls, name = _field(path)
    return bounds_of(cls, name) if _type_hints(cls)[name] in (int, float) else None
