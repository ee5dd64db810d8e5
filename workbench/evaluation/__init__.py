"""Evaluation harnesses that sit above the runner: reranker evaluation and training, and the studies.

Each study runs the library's own stages (the experiment runner, the reranker evaluation,
the routing evaluation, the cost model) over a handful of settings and returns a frozen
result with `.to_frame()` and, where a choice is to be made, `.recommend(...)`: the cheapest
setting whose quality is within a stated share of the best, computed from the data.

Modules: `common` (the recommendation rule), `reranker_evaluation` (candidates and
`evaluate_reranker`), `reranker_training` (`train_reranker`), and one per study: `chunk_size`,
`reranking` (rerank depth and the context trade-off), `retrieval`, `filters`, `routing`
(with the cost levers' summary).
"""

from __future__ import annotations

from . import chunk_size, common, filters, reranker_evaluation, reranker_training, reranking, retrieval, routing
from .chunk_size import ChunkSizePoint, ChunkSizeStudy, chunk_size_study
from .common import Recommendation, recommend
from .filters import FilterStudy, filter_study
from .reranker_evaluation import (
    Candidates,
    DepthSummary,
    RerankEvaluation,
    RerankRow,
    evaluate_reranker,
    retrieve_candidates,
)
from .reranker_training import TrainConfig, TrainingReport, train_reranker
from .reranking import ContextOption, ContextTradeoff, RerankStudy, context_tradeoff, rerank_study
from .retrieval import RetrievalPoint, RetrievalStudy, retrieval_study
from .routing import RoutingStudy, lever_summary, routing_study

__all__ = [
    *common.__all__,
    *reranker_evaluation.__all__,
    *reranker_training.__all__,
    *chunk_size.__all__,
    *reranking.__all__,
    *retrieval.__all__,
    *filters.__all__,
    *routing.__all__,
]
