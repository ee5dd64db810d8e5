"""Reranking study: rerankers at several candidate depths, and reranking against sending more chunks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import PipelineConfig, RerankingConfig, RetrievalConfig
from ..costs import Workload
from ..embedding import load_embedder
from ..metrics import ndcg_at_k, precision_at_k, recall_at_k
from ..reranking import make_reranker
from .common import Recommendation, mean_tokens, recommend, usd_per_1k
from .reranker_evaluation import RerankEvaluation, evaluate_reranker, ranked_ids, retrieve_candidates

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset

__all__ = ["RerankStudy", "rerank_study", "ContextOption", "ContextTradeoff", "context_tradeoff"]


@dataclass(frozen=True, kw_only=True)
class RerankStudy:
    """Rerankers evaluated on one set of first-stage candidates, at several depths N.

    `mean_chunk_tokens` is the mean Claude-token estimate of the corpus' chunks, used to price
    k chunks of context; `config` is the first stage (and the generation model priced).
    """

    dataset: str
    unit: str
    k: int
    depths: tuple[int, ...]
    config: PipelineConfig
    evaluations: tuple[RerankEvaluation, ...]
    first_stage: Mapping[int, Mapping[str, float]]  # context size -> recall/precision/ndcg of the input
    mean_chunk_tokens: float
    retrieval_ms: float
    queries: int

    def to_frame(self) -> pd.DataFrame:
        """One row per (reranker, depth N): nDCG, precision and recall at k before and after,
        wins/losses, p-value, verdict, and the milliseconds the reranker adds per query."""
        import pandas as pd

        columns = ["reranker", "depth", "ndcg_before", "ndcg_after", "precision_before", "precision_after",
                   "recall_before", "recall_after", "candidate_recall", "wins", "losses", "ties", "p_value",
                   "verdict", "ms_per_query"]
        return pd.concat([e.to_frame()[columns] for e in self.evaluations], ignore_index=True)

    def per_query_frame(self) -> pd.DataFrame:
        """One row per (reranker, query, depth): nDCG and precision before and after."""
        import pandas as pd

        return pd.concat([e.per_query_frame() for e in self.evaluations], ignore_index=True)


def rerank_study(
    dataset: Dataset,
    rerankers: Mapping[str, RerankingConfig],
    *,
    base: PipelineConfig | None = None,
    depths: Sequence[int] = (10, 20, 50),
    k: int = 5,
    context_sizes: Sequence[int] = (5, 10, 20),
    query_ids: Sequence[str] | None = None,
) -> RerankStudy:
    """Retrieve max(depths) candidates once, then rerank the top N to k with each reranker.

    Args:
        dataset: documents and judgements; span-annotated sets are judged per chunk.
        rerankers: label -> reranking config (its `kind`, model and options; `k` and
            `candidates` are ignored: `k` and `depths` here decide).
        base: chunking, embedding, retrieval and generation; default `PipelineConfig()` with
            dense retrieval.
        depths: candidate depths N to rerank from.
        k: how many reranked chunks are kept.
        context_sizes: first-stage context sizes to compare with (more chunks, no reranker).
        query_ids: which queries (default: every judged query).

    Returns:
        A `RerankStudy`.

    Raises:
        ValueError: no rerankers, or depths/k the reranker evaluation rejects.
    """

    if not rerankers:
        raise ValueError("rerankers is empty; give label -> RerankingConfig, e.g. {'maxsim': RerankingConfig(kind='maxsim')}")
    base = base or PipelineConfig(retrieval=RetrievalConfig(kind="dense"))
    depth = max([*depths, *context_sizes])
    candidates = retrieve_candidates(base, dataset, depth=depth, query_ids=query_ids)
    embedder = load_embedder(base.embedding)  # loads its model only when a text is not cached
    evaluations = []
    for label, config in rerankers.items():
        config = dataclasses.replace(config, k=k, candidates=max(depths))
        reranker = make_reranker(config, embedder=embedder)
        if reranker is None:
            raise ValueError(f"reranker {label!r} has kind 'none'; the first stage is measured already")
        evaluations.append(evaluate_reranker(reranker, candidates, depths=depths, k=k, name=label))
    first: dict[int, dict[str, float]] = {}
    for n in context_sizes:
        values: dict[str, list[float]] = {"recall": [], "precision": [], "ndcg": []}
        for qid, hits in candidates.hits.items():
            rel = candidates.relevance.get(qid, {})
            ranked = ranked_ids(hits[:n], candidates.unit)
            values["recall"].append(recall_at_k(rel, ranked, n))
            values["precision"].append(precision_at_k(rel, ranked, n))
            values["ndcg"].append(ndcg_at_k(rel, ranked, n))
        first[n] = {name: float(np.mean(v)) for name, v in values.items()}
    return RerankStudy(
        dataset=dataset.name, unit=candidates.unit, k=k, depths=tuple(depths), config=base,
        evaluations=tuple(evaluations), first_stage=first,
        mean_chunk_tokens=mean_tokens(candidates.chunks), retrieval_ms=candidates.retrieval_ms,
        queries=len(candidates.hits),
    )


@dataclass(frozen=True, kw_only=True)
class ContextOption:
    """One way to fill the prompt: the first stage's top n, or a reranker's top k of N."""

    label: str
    chunks: int
    recall: float
    precision: float
    context_tokens: float
    usd_per_1k: float
    added_ms: float


@dataclass(frozen=True, kw_only=True)
class ContextTradeoff:
    """Ways to fill the prompt side by side: more first-stage chunks, or fewer reranked ones."""

    dataset: str
    unit: str
    depth: int
    options: tuple[ContextOption, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per option: chunks sent, recall, precision, context tokens, USD per 1k, ms added."""
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(o) for o in self.options])

    def recommend(self, *, share: float = 0.95) -> Recommendation:
        """The cheapest option (USD per 1,000 queries) within `share` of the best recall; among
        equally priced options the one with the higher recall."""
        return recommend({o.label: {"recall": o.recall, "usd_per_1k": o.usd_per_1k} for o in self.options},
                         metric="recall", cost="usd_per_1k", share=share)


def context_tradeoff(
    study: RerankStudy, *, depth: int | None = None, workload: Workload | None = None
) -> ContextTradeoff:
    """Reranking to k against passing more first-stage chunks: recall, precision and cost side by side.

    Recall and precision are at the number of chunks sent (what the model gets to read); the
    cost is the cost model's price of 1,000 queries with that many chunks of the corpus' mean
    size, and `added_ms` the reranker's time per query (it costs no tokens: it runs locally).

    Args:
        study: a `rerank_study` result.
        depth: the candidate depth N of the reranked options; default the deepest studied.
        workload: traffic and prompt shape (its `chunk_tokens` and `k` are replaced); default
            the cost model's defaults.

    Raises:
        ValueError: a depth the study did not evaluate.
    """

    depth = max(study.depths) if depth is None else depth
    if depth not in study.depths:
        raise ValueError(f"depth={depth} was not studied; choose one of {list(study.depths)}")
    workload = workload or Workload()
    options = [
        ContextOption(label=f"first stage, top {n}", chunks=n, recall=m["recall"], precision=m["precision"],
                      context_tokens=n * study.mean_chunk_tokens,
                      usd_per_1k=usd_per_1k(study.config, workload, chunk_tokens=study.mean_chunk_tokens, k=n),
                      added_ms=0.0)
        for n, m in sorted(study.first_stage.items())
    ]
    for evaluation in study.evaluations:
        s = next(s for s in evaluation.summaries if s.depth == depth)
        options.append(ContextOption(
            label=f"{evaluation.name}, top {study.k} of {depth}", chunks=study.k, recall=s.recall_after,
            precision=s.precision_after, context_tokens=study.k * study.mean_chunk_tokens,
            usd_per_1k=usd_per_1k(study.config, workload, chunk_tokens=study.mean_chunk_tokens, k=study.k),
            added_ms=s.ms_per_query,
        ))
    return ContextTradeoff(dataset=study.dataset, unit=study.unit, depth=depth, options=tuple(options))
