"""A response cache in the answer path, and its measurement on query logs.

`cache` holds the SQLite-backed exact and semantic cache `Pipeline.answer` consults (scoped by
config hash and corpus version, with a TTL); `logs` measures hit and wrong-hit rates per
threshold over a query log.
"""

from __future__ import annotations

from .cache import (
    CacheHit,
    CacheStats,
    ResponseCache,
    ResponseCacheError,
    ServedAnswer,
    cache_scope,
    corpus_version,
    normalize_query,
    open_response_cache,
)
from .logs import ThresholdSweep, label_queries, load_paraphrases, query_log, shares_relevance, threshold_sweep

__all__ = [
    "ResponseCache",
    "ResponseCacheError",
    "CacheHit",
    "CacheStats",
    "ServedAnswer",
    "ThresholdSweep",
    "threshold_sweep",
    "normalize_query",
    "corpus_version",
    "cache_scope",
    "open_response_cache",
    "shares_relevance",
    "load_paraphrases",
    "query_log",
    "label_queries",
]
