"""Retrieval study: BM25, dense and hybrid (RRF, and weighted fusion over dense weights)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import PipelineConfig, RerankingConfig, RetrievalConfig
from ..runs import evaluate
from .common import Recommendation, percentile_ms, recommend

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset
    from ..results import ExperimentResult

__all__ = ["RetrievalPoint", "RetrievalStudy", "retrieval_study"]


@dataclass(frozen=True, kw_only=True)
class RetrievalPoint:
    """One retriever setting: its metrics, the retrievers each query runs (hybrid: 2), and
    per-query latency percentiles (ms)."""

    label: str
    kind: str
    fusion: str
    dense_weight: float | None
    retrievers: int
    metrics: Mapping[str, float]
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True, kw_only=True)
class RetrievalStudy:
    """BM25, dense and hybrid retrieval (RRF and weighted fusion over dense weights) on one dataset."""

    dataset: str
    queries: int
    points: tuple[RetrievalPoint, ...]
    results: Mapping[str, ExperimentResult] = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per setting: label, kind, fusion, dense weight, metrics, p50/p95 latency."""
        import pandas as pd

        return pd.DataFrame([
            {"label": p.label, "kind": p.kind, "fusion": p.fusion, "dense_weight": p.dense_weight,
             "retrievers": p.retrievers, **p.metrics, "p50_ms": p.p50_ms, "p95_ms": p.p95_ms}
            for p in self.points
        ])

    def recommend(self, metric: str, *, share: float = 0.99) -> Recommendation:
        """The simplest setting (fewest retrievers per query; ties: higher `metric`) within `share`
        of the best `metric`. Simplicity, not measured latency, so the choice does not depend on
        the machine; the latencies are in `to_frame()`."""
        return recommend({p.label: {**p.metrics, "retrievers per query": p.retrievers} for p in self.points},
                         metric=metric, cost="retrievers per query", share=share)


def retrieval_study(
    dataset: Dataset,
    *,
    base: PipelineConfig | None = None,
    dense_weights: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    query_ids: Sequence[str] | None = None,
) -> RetrievalStudy:
    """BM25 against dense against hybrid: RRF, and weighted score fusion at each dense weight.

    Args:
        dataset: documents and judgements.
        base: chunking, embedding and the retrieval options not swept; default `PipelineConfig()`.
        dense_weights: weights of the dense scores in weighted fusion (BM25 gets 1 - w).
        query_ids: which queries (default: every judged query).

    Raises:
        ConfigError: a dense weight outside [0, 1].
    """

    base = base or PipelineConfig()
    ids = list(query_ids) if query_ids is not None else dataset.evaluated_queries
    settings: list[tuple[str, RetrievalConfig]] = [
        ("bm25", dataclasses.replace(base.retrieval, kind="bm25")),
        ("dense", dataclasses.replace(base.retrieval, kind="dense")),
        ("hybrid rrf", dataclasses.replace(base.retrieval, kind="hybrid", fusion="rrf")),
    ]
    settings += [(f"hybrid w={w:g}", dataclasses.replace(base.retrieval, kind="hybrid", fusion="weighted",
                                                            dense_weight=w)) for w in dense_weights]
    points, results = [], {}
    for label, retrieval in settings:
        config = dataclasses.replace(base, name=label, retrieval=retrieval, reranking=RerankingConfig())
        result = evaluate(config, dataset, query_ids=ids).result  # recorded, or served from the run store
        results[label] = result
        points.append(RetrievalPoint(
            label=label, kind=retrieval.kind, fusion=retrieval.fusion if retrieval.kind == "hybrid" else "",
            dense_weight=retrieval.dense_weight if label.startswith("hybrid w=") else None,
            retrievers=2 if retrieval.kind == "hybrid" else 1,
            metrics=dict(result.aggregates), p50_ms=percentile_ms(result, 50), p95_ms=percentile_ms(result, 95),
        ))
    return RetrievalStudy(dataset=dataset.name, queries=len(ids), points=tuple(points), results=results)
