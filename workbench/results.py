"""The results of runs: per-query rows, a run's result, one answered query. Plain frozen values.

They live on the base floor so that the run store, tracing and the plots read them without
importing the runner (`workbench.experiment`, which re-exports them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .types import Answer, Hit

if TYPE_CHECKING:
    import pandas as pd

    from .config import PipelineConfig
    from .response_cache import CacheHit

__all__ = ["QueryRow", "ExperimentResult", "Response"]


@dataclass(frozen=True, kw_only=True)
class QueryRow:
    """One query's outcome: the final ranking (chunks and documents), its metrics and latency."""

    query_id: str
    query: str
    chunk_ids: tuple[str, ...]
    retrieved: tuple[str, ...]  # document ids, each at its best chunk's rank
    scores: tuple[float, ...]
    metrics: Mapping[str, float]
    latency_s: float
    stage_latency_s: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    """Per-query rows and aggregate metrics of one config on one dataset."""

    config: PipelineConfig
    config_hash: str
    dataset_name: str
    dataset_fingerprint: str
    rows: tuple[QueryRow, ...]
    aggregates: Mapping[str, float]
    n_chunks: int
    build_s: Mapping[str, float]
    embedding_stats: Mapping[str, int]
    started_at: str
    finished_at: str

    def to_frame(self) -> pd.DataFrame:
        """Per-query rows as a DataFrame: ids, query, latency, one column per metric."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "query_id": r.query_id,
                    "query": r.query,
                    "latency_ms": 1000 * r.latency_s,
                    **r.metrics,
                    "retrieved": list(r.retrieved[:10]),
                }
                for r in self.rows
            ]
        )


@dataclass(frozen=True, kw_only=True)
class Response:
    """One answered query: the model routed to, the hits, the answer and each stage's seconds."""

    query: str
    model: str
    hits: tuple[Hit, ...]
    answer: Answer
    attempts: tuple[Answer, ...]  # every answer paid for (a cascade's discarded ones first)
    stage_latency_s: Mapping[str, float]
    # set when the response cache served the answer: nothing was paid (no attempts, no hits);
    # the hit's answer keeps the usage of the call that first produced it
    cache_hit: CacheHit | None = None
    dropped: tuple[str, ...] = ()  # chunk ids left out to keep within budget.context_tokens (lowest-ranked first)
