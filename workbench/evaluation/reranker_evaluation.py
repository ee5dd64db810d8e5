"""Reranker evaluation: first-stage candidates, and each reranker against them at several depths."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..config import PipelineConfig, RerankingConfig
from ..experiment import build_pipeline
from ..metrics import ndcg_at_k, precision_at_k, recall_at_k
from ..reranking.base import Reranker, _check_k
from ..stats import compare_paired
from ..types import Chunk, Hit

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset

__all__ = [
    "Candidates",
    "retrieve_candidates",
    "RerankRow",
    "DepthSummary",
    "RerankEvaluation",
    "evaluate_reranker",
]


@dataclass(frozen=True, kw_only=True)
class Candidates:
    """First-stage rankings of a dataset's queries, to rerank at several depths.

    `unit` says what relevance is judged on: "document" (qrels; chunks count at their document's
    best rank) or "chunk" (span-annotated sets; a chunk is relevant when it overlaps a reference
    span of the query). `relevance[qid]` maps those ids to graded relevance.
    """

    dataset: str
    unit: Literal["document", "chunk"]
    depth: int
    chunks: tuple[Chunk, ...]
    queries: Mapping[str, str]
    hits: Mapping[str, tuple[Hit, ...]]
    relevance: Mapping[str, Mapping[str, int]]
    retrieval_ms: float


def chunk_relevance(dataset: Dataset, chunks: Sequence[Chunk], qids: Sequence[str]) -> dict[str, dict[str, int]]:
    by_doc: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    relevance: dict[str, dict[str, int]] = {}
    for qid in qids:
        relevance[qid] = {
            c.id: 1
            for s in dataset.spans.get(qid, ())
            for c in by_doc.get(s.doc_id, ())
            if c.start < s.end and s.start < c.end
        }
    return relevance


def retrieve_candidates(
    config: PipelineConfig, dataset: Dataset, *, depth: int = 100, query_ids: Sequence[str] | None = None
) -> Candidates:
    """Chunk, index and retrieve the top `depth` hits of each query with `config`'s first stage.

    Args:
        config: chunking, embedding and retrieval settings (its reranking stage is ignored).
        dataset: documents, queries and judgements; span-annotated sets are judged per chunk.
        depth: how many hits to keep per query (the largest N to evaluate).
        query_ids: which queries (default: every query with judgements).

    Returns:
        `Candidates` for `evaluate_reranker` and `train_reranker`.

    Raises:
        ValueError: depth <= 0, depth larger than the number of chunks, or unknown query ids.
    """

    if depth <= 0:
        raise ValueError(f"depth must be positive, got {depth}")
    first_stage = dataclasses.replace(config, reranking=RerankingConfig(kind="none"))
    pipeline = build_pipeline(first_stage, dataset)
    if depth > len(pipeline.chunks):
        raise ValueError(
            f"depth={depth} is larger than the corpus ({len(pipeline.chunks)} chunks of "
            f"{dataset.name!r}); retrieve at most {len(pipeline.chunks)} candidates"
        )
    qids = list(query_ids) if query_ids is not None else dataset.evaluated_queries
    unknown = [q for q in qids if q not in dataset.queries]
    if unknown:
        raise ValueError(f"unknown query ids {unknown[:5]}; pick ids from dataset.queries")
    t0 = time.perf_counter()
    ranked = pipeline.retriever.retrieve_many([dataset.queries[q] for q in qids], depth)
    ms = 1000 * (time.perf_counter() - t0) / max(len(qids), 1)
    unit: Literal["document", "chunk"] = "chunk" if dataset.spans else "document"
    if unit == "chunk":
        relevance = chunk_relevance(dataset, pipeline.chunks, qids)
    else:
        relevance = {q: dict(dataset.qrels.get(q, {})) for q in qids}
    return Candidates(
        dataset=dataset.name, unit=unit, depth=depth, chunks=pipeline.chunks,
        queries={q: dataset.queries[q] for q in qids},
        hits={q: tuple(h) for q, h in zip(qids, ranked)}, relevance=relevance, retrieval_ms=ms,
    )


def ranked_ids(hits: Sequence[Hit], unit: str) -> list[str]:
    if unit == "chunk":
        return [h.chunk.id for h in hits]
    return list(dict.fromkeys(h.chunk.doc_id for h in hits))


@dataclass(frozen=True, kw_only=True)
class RerankRow:
    """One query at one candidate depth: metrics before and after reranking, and the time added."""

    query_id: str
    depth: int
    ndcg_before: float
    ndcg_after: float
    precision_before: float
    precision_after: float
    recall_before: float
    recall_after: float
    rerank_ms: float


@dataclass(frozen=True, kw_only=True)
class DepthSummary:
    """A reranker at one candidate depth N, against its input ranking, over all queries.

    `p_value` is the two-sided paired randomisation (sign-flip) test of the per-query nDCG@k
    differences (`workbench.stats`); `ci_low`/`ci_high` a 95% paired bootstrap interval of the
    mean difference. `verdict` is "helps"/"hurts" when p < 0.05, else "helps (not significant)",
    "hurts (not significant)" or "no change". `candidate_recall` is recall@N of the input, the
    ceiling any reranker at this depth can reach.
    """

    depth: int
    k: int
    queries: int
    ndcg_before: float
    ndcg_after: float
    precision_before: float
    precision_after: float
    recall_before: float
    recall_after: float
    candidate_recall: float
    wins: int
    losses: int
    ties: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    ms_per_query: float
    verdict: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class RerankEvaluation:
    """A reranker's effect at each candidate depth (`summaries`), and the per-query rows behind it."""

    name: str
    dataset: str
    unit: str
    k: int
    summaries: tuple[DepthSummary, ...]
    rows: tuple[RerankRow, ...] = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per depth N: metrics before/after, wins/losses, p-value, ms added, verdict."""
        import pandas as pd

        return pd.DataFrame([{"reranker": self.name, **dataclasses.asdict(s)} for s in self.summaries])

    def per_query_frame(self) -> pd.DataFrame:
        """One row per (query, depth)."""
        import pandas as pd

        return pd.DataFrame([{"reranker": self.name, **dataclasses.asdict(r)} for r in self.rows])


ALPHA = 0.05


def _verdict(diff: float, p_value: float) -> str:
    if abs(diff) < 1e-12:
        return "no change"
    word = "helps" if diff > 0 else "hurts"
    return word if p_value < ALPHA else f"{word} (not significant)"


def evaluate_reranker(
    reranker: Reranker,
    candidates: Candidates,
    *,
    depths: Sequence[int] = (10, 20, 50, 100),
    k: int = 10,
    name: str = "",
    query_ids: Sequence[str] | None = None,
) -> RerankEvaluation:
    """Rerank each query's top N candidates to k, for each N in `depths`, and compare with the input.

    "Before" is the input's own top k; "after" is the reranker's top k of the input's top N.
    nDCG@k, precision@k and recall@k are computed per query; wins and losses count queries
    whose nDCG@k rose or fell; significance is a paired randomisation test over queries. The
    time is the reranker's wall time per query (one untimed call first loads models); a
    reranker's `prepare(query)` does its query-only work once per query, and that time is added
    to each depth's.

    Args:
        reranker: what to evaluate.
        candidates: first-stage rankings from `retrieve_candidates`, at least max(depths) deep.
        depths: candidate depths N to rerank from.
        k: how many reranked hits are kept and scored.
        name: a label for the result.
        query_ids: a subset of the candidates' queries (e.g. a held-out split).

    Returns:
        A `RerankEvaluation`; `.to_frame()` has one row per depth.

    Raises:
        ValueError: k <= 0, a depth smaller than k, a depth deeper than the candidates, or no queries.
    """

    _check_depths(depths, k, candidates)
    qids = list(query_ids) if query_ids is not None else list(candidates.hits)
    missing = [q for q in qids if q not in candidates.hits]
    if missing:
        raise ValueError(f"query ids {missing[:5]} have no candidates; pick ids from candidates.hits")
    if not qids:
        raise ValueError("no queries to evaluate; the candidates hold none")
    first = candidates.hits[qids[0]]
    if first:
        reranker.rerank(candidates.queries[qids[0]], first[: min(depths)], k)  # loads models, untimed
    by_depth = _rows(reranker, candidates, qids, depths, k)
    rows = tuple(r for n in depths for r in by_depth[n])
    summaries = tuple(_summary(by_depth[n], n, k, candidates, qids) for n in depths)
    return RerankEvaluation(
        name=name or type(reranker).__name__, dataset=candidates.dataset, unit=candidates.unit, k=k,
        summaries=summaries, rows=rows,
    )


def _check_depths(depths: Sequence[int], k: int, candidates: Candidates) -> None:
    _check_k(k)
    if not depths:
        raise ValueError("depths is empty; give at least one candidate depth N, e.g. (10, 20, 50, 100)")
    for n in depths:
        if n < k:
            raise ValueError(
                f"depth N={n} is smaller than k={k}; a reranker only reorders the N candidates it is "
                f"given, so use depths >= {k} or a smaller k"
            )
        if n > candidates.depth:
            raise ValueError(
                f"depth N={n} is deeper than the {candidates.depth} candidates retrieved; call "
                f"retrieve_candidates(..., depth={max(depths)}) or drop N={n}"
            )


def _rows(
    reranker: Reranker, candidates: Candidates, qids: Sequence[str], depths: Sequence[int], k: int
) -> dict[int, list[RerankRow]]:
    """Each query's metrics before and after reranking its top N, for each N, and the time taken."""
    unit = candidates.unit
    by_depth: dict[int, list[RerankRow]] = {n: [] for n in depths}
    for qid in qids:
        rel = candidates.relevance.get(qid, {})
        hits = candidates.hits[qid]
        query = candidates.queries[qid]
        before = ranked_ids(hits[:k], unit)
        # Query-only work (MaxSim's query encoding) is done once and charged to every depth.
        t0 = time.perf_counter()
        if hits:
            reranker.prepare(query)
        prepare_ms = 1000 * (time.perf_counter() - t0)
        for n in depths:
            t0 = time.perf_counter()
            after_hits = reranker.rerank(query, hits[:n], k) if hits else []
            ms = prepare_ms + 1000 * (time.perf_counter() - t0)
            after = ranked_ids(after_hits, unit)
            by_depth[n].append(
                RerankRow(
                    query_id=qid, depth=n,
                    ndcg_before=ndcg_at_k(rel, before, k), ndcg_after=ndcg_at_k(rel, after, k),
                    precision_before=precision_at_k(rel, before, k), precision_after=precision_at_k(rel, after, k),
                    recall_before=recall_at_k(rel, before, k), recall_after=recall_at_k(rel, after, k),
                    rerank_ms=ms,
                )
            )
    return by_depth


def _summary(
    depth_rows: Sequence[RerankRow], n: int, k: int, candidates: Candidates, qids: Sequence[str]
) -> DepthSummary:
    """One depth's means, wins and losses, and the paired test of nDCG@k after against before."""
    cmp = compare_paired(
        {r.query_id: r.ndcg_before for r in depth_rows},
        {r.query_id: r.ndcg_after for r in depth_rows},
        metric=f"ndcg@{k}",
    )

    def mean(attr: str) -> float:
        return float(np.mean([getattr(r, attr) for r in depth_rows]))

    candidate_recall = float(np.mean([
        recall_at_k(candidates.relevance.get(q, {}), ranked_ids(candidates.hits[q][:n], candidates.unit), n)
        for q in qids
    ]))
    return DepthSummary(
        depth=n, k=k, queries=len(depth_rows),
        ndcg_before=mean("ndcg_before"), ndcg_after=mean("ndcg_after"),
        precision_before=mean("precision_before"), precision_after=mean("precision_after"),
        recall_before=mean("recall_before"), recall_after=mean("recall_after"),
        candidate_recall=candidate_recall,
        wins=sum(r.ndcg_after > r.ndcg_before + 1e-12 for r in depth_rows),
        losses=sum(r.ndcg_after < r.ndcg_before - 1e-12 for r in depth_rows),
        ties=sum(abs(r.ndcg_after - r.ndcg_before) <= 1e-12 for r in depth_rows),
        mean_diff=cmp.mean_diff, ci_low=cmp.ci_low, ci_high=cmp.ci_high, p_value=cmp.p_value,
        test="paired randomisation (sign-flip), two-sided" + (", exact" if cmp.exact else ""),
        ms_per_query=mean("rerank_ms"),
        verdict=_verdict(cmp.mean_diff, cmp.p_value),
        note=cmp.note,
    )

