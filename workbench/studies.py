"""The studies behind the notebooks: small sweeps over one design choice, each a frozen result.

Each study runs the library's own stages (the experiment runner, the reranker evaluation,
the routing evaluation, the cost model) over a handful of settings and returns a frozen
result with `.to_frame()` and, where a choice is to be made, `.recommend(...)`: the cheapest
setting whose quality is within a stated share of the best, computed from the data.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import (
    ChunkingConfig,
    PipelineConfig,
    RerankingConfig,
    RetrievalConfig,
    RoutingConfig,
)

if TYPE_CHECKING:
    import pandas as pd

    from .costs import CostBreakdown, Workload
    from .datasets import Dataset
    from .experiment import ExperimentResult
    from .reranking import RerankEvaluation
    from .routing import CostQualityCurve, RoutingEvaluation
    from .types import Chunk, Hit

__all__ = [
    "Recommendation",
    "recommend",
    "ChunkSizePoint",
    "ChunkSizeStudy",
    "chunk_size_study",
    "RerankStudy",
    "rerank_study",
    "ContextOption",
    "ContextTradeoff",
    "context_tradeoff",
    "RetrievalPoint",
    "RetrievalStudy",
    "retrieval_study",
    "FilterStudy",
    "filter_study",
    "RoutingStudy",
    "routing_study",
    "lever_summary",
]


# --- the recommendation rule ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    """The cheapest setting within `share` of the best value of `metric`, and the best itself."""

    label: str
    metric: str
    value: float
    cost: float
    best_label: str
    best_value: float
    best_cost: float
    share: float
    cost_name: str

    def __str__(self) -> str:
        if self.label == self.best_label:
            return (f"{self.label}: the best {self.metric} ({self.value:.3f}) at {self.cost_name} "
                    f"{self.cost:.4g}, and no cheaper setting comes within {self.share:.0%} of it")
        return (f"{self.label}: {self.metric} {self.value:.3f} ({self.value / self.best_value:.1%} of the best, "
                f"{self.best_label} at {self.best_value:.3f}) for {self.cost_name} {self.cost:.4g} instead of "
                f"{self.best_cost:.4g} ({1 - self.cost / self.best_cost:.0%} less)")


def recommend(
    points: Mapping[str, Mapping[str, float]], *, metric: str, cost: str, share: float = 0.95
) -> Recommendation:
    """The cheapest point whose `metric` reaches `share` of the best point's (ties: higher metric).

    Args:
        points: label -> values, each holding `metric` (higher is better) and `cost` (lower is better).
        metric: the quality to keep.
        cost: what to minimise (e.g. "usd_per_1k", "latency_ms").
        share: the fraction of the best quality that is good enough, in (0, 1].

    Returns:
        A `Recommendation`; its `str()` is a one-line explanation.

    Raises:
        ValueError: no points, a point missing `metric` or `cost`, a share outside (0, 1], or a
            best value that is not positive (nothing to keep a share of).
    """
    if not points:
        raise ValueError("recommend needs at least one point")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share={share} must lie in (0, 1]; 0.95 keeps 95% of the best {metric}")
    for label, values in points.items():
        missing = [name for name in (metric, cost) if name not in values]
        if missing:
            raise ValueError(f"point {label!r} lacks {missing}; it has {sorted(values)}")
    best = max(points, key=lambda label: (points[label][metric], -points[label][cost]))
    top = points[best][metric]
    if not top > 0:
        raise ValueError(f"the best {metric} is {top}; nothing to keep a share of, so pick another metric")
    good = [label for label in points if points[label][metric] >= share * top - 1e-12]
    chosen = min(good, key=lambda label: (points[label][cost], -points[label][metric]))
    return Recommendation(
        label=chosen, metric=metric, value=float(points[chosen][metric]), cost=float(points[chosen][cost]),
        best_label=best, best_value=float(top), best_cost=float(points[best][cost]), share=share, cost_name=cost,
    )


# --- shared helpers ------------------------------------------------------------------------


def _mean_tokens(chunks: Sequence[Chunk], *, sample: int = 2_000) -> float:
    """Mean Claude-token estimate of the chunks; above `sample` chunks, of an evenly spaced sample."""
    from .costs import estimate_tokens

    if not chunks:
        return 0.0
    step = max(1, math.ceil(len(chunks) / sample))
    return float(np.mean([estimate_tokens(c.text) for c in chunks[::step]]))


def _usd_per_1k(config: PipelineConfig, workload: Workload, *, chunk_tokens: float, k: int) -> float:
    from .costs import cost_per_query

    shaped = dataclasses.replace(workload, chunk_tokens=round(chunk_tokens), k=k)
    return 1000.0 * cost_per_query(config, shaped).total


def _default_workload(dataset: Dataset, query_ids: Sequence[str]) -> Workload:
    """The cost model's defaults, with the query length measured on the dataset's queries."""
    from .costs import Workload, estimate_tokens

    lengths = [estimate_tokens(dataset.queries[q]) for q in query_ids]
    return Workload(query_tokens=round(float(np.mean(lengths))) if lengths else 30)


def _ranked_units(hits: Sequence[Hit], unit: str) -> list[str]:
    """Chunk ids in rank order, or document ids at their best chunk's rank (as the reranker evaluation ranks)."""
    if unit == "chunk":
        return [h.chunk.id for h in hits]
    return list(dict.fromkeys(h.chunk.doc_id for h in hits))


def _percentile_ms(result: ExperimentResult, q: float) -> float:
    return float(np.percentile([1000 * r.latency_s for r in result.rows], q)) if result.rows else 0.0


# --- chunk size ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ChunkSizePoint:
    """One chunker setting on one dataset: quality, size of the index, build time, prompt cost.

    `context_tokens` is the mean number of Claude tokens (offline estimate) the top `k` chunks
    put into the prompt per query; `mean_chunk_tokens` is the same estimate per chunk (over an
    evenly spaced sample of 2,000 chunks on larger corpora); `usd_per_1k` is the cost model's
    price of 1,000 queries with that context. `build_s` is chunking + embedding + indexing time (near 0 with a warm cache);
    `embedded_texts` counts the texts this setting had to embed (cache misses).
    """

    method: str
    size: int
    overlap: int
    n_chunks: int
    mean_chunk_tokens: float
    context_tokens: float
    usd_per_1k: float
    build_s: float
    embedded_texts: int
    metrics: Mapping[str, float]

    @property
    def label(self) -> str:
        """e.g. "recursive 256" or "fixed 256/64" (size/overlap)."""
        return f"{self.method} {self.size}" + (f"/{self.overlap}" if self.overlap else "")


@dataclass(frozen=True, kw_only=True)
class ChunkSizeStudy:
    """A chunker x size x overlap sweep on one dataset."""

    dataset: str
    retrieval: str
    k: int
    queries: int
    points: tuple[ChunkSizePoint, ...]
    wall_s: float

    def to_frame(self) -> pd.DataFrame:
        """One row per setting: method, size, overlap, chunks, tokens, cost, build time, metrics."""
        import pandas as pd

        return pd.DataFrame([
            {"label": p.label, "method": p.method, "size": p.size, "overlap": p.overlap, "n_chunks": p.n_chunks,
             "mean_chunk_tokens": p.mean_chunk_tokens, "context_tokens": p.context_tokens,
             "usd_per_1k": p.usd_per_1k, "build_s": p.build_s, "embedded_texts": p.embedded_texts, **p.metrics}
            for p in self.points
        ])

    def recommend(self, metric: str, *, share: float = 0.95) -> Recommendation:
        """The cheapest setting (cost per 1,000 queries) within `share` of the best `metric`."""
        return recommend({p.label: {**p.metrics, "usd_per_1k": p.usd_per_1k} for p in self.points},
                         metric=metric, cost="usd_per_1k", share=share)


def chunk_size_study(
    dataset: Dataset,
    *,
    methods: Sequence[str] = ("fixed", "recursive", "semantic"),
    sizes: Sequence[int] = (128, 256, 512, 1024),
    overlaps: Sequence[int] = (0,),
    base: PipelineConfig | None = None,
    k: int = 5,
    workload: Workload | None = None,
    query_ids: Sequence[str] | None = None,
) -> ChunkSizeStudy:
    """Run every chunker x size x overlap on `dataset` and price the context each one sends.

    Args:
        dataset: documents and judgements (span-annotated sets get span metrics at `k`).
        methods: chunking methods (see `workbench.chunking.CHUNKERS`).
        sizes: chunk sizes in tokens of the base config's chunking tokenizer.
        overlaps: overlaps in the same tokens; combinations with overlap >= size are left out.
        base: the rest of the pipeline (retrieval, embedding, generation model); default
            `PipelineConfig()` with dense retrieval.
        k: how many chunks go into the prompt (span metrics and cost are taken at k).
        workload: the cost model's traffic and prompt shape; default its defaults with the
            dataset's mean query length. Its `chunk_tokens` and `k` are replaced per setting.
        query_ids: evaluate only these queries (default: every judged query).

    Returns:
        A `ChunkSizeStudy`, points in the order methods x sizes x overlaps.

    Raises:
        ValueError: an empty sweep, k <= 0, or a method, size or overlap no config accepts.
    """
    from .costs import estimate_tokens
    from .experiment import build_pipeline, run_experiment

    if k <= 0:
        raise ValueError(f"k={k} must be positive: it is how many chunks go into the prompt")
    combos = [(m, s, o) for m in methods for s in sizes for o in overlaps if o < s]
    if not combos:
        raise ValueError(
            f"nothing to sweep: methods={list(methods)}, sizes={list(sizes)}, overlaps={list(overlaps)}; "
            "give at least one method and one size larger than an overlap"
        )
    base = base or PipelineConfig(retrieval=RetrievalConfig(kind="dense"))
    base = dataclasses.replace(base, evaluation=dataclasses.replace(base.evaluation, span_k=k))
    ids = list(query_ids) if query_ids is not None else dataset.evaluated_queries
    workload = workload or _default_workload(dataset, ids)
    t0 = time.perf_counter()
    points = []
    for method, size, overlap in combos:
        chunking = dataclasses.replace(base.chunking, method=method, size=size, overlap=overlap)
        config = dataclasses.replace(base, name=f"{method}-{size}-{overlap}", chunking=chunking)
        result = run_experiment(config, dataset, query_ids=ids)
        chunks = build_pipeline(config, dataset).chunks  # the runner's in-process cache: no rebuild
        text = {c.id: c.text for c in chunks}
        context = float(np.mean([sum(estimate_tokens(text[c]) for c in r.chunk_ids[:k]) for r in result.rows])
                        ) if result.rows else 0.0
        points.append(ChunkSizePoint(
            method=method, size=size, overlap=overlap, n_chunks=result.n_chunks,
            mean_chunk_tokens=_mean_tokens(chunks),
            context_tokens=context,
            usd_per_1k=_usd_per_1k(config, workload, chunk_tokens=context / k, k=k),
            build_s=float(sum(result.build_s.values())),
            embedded_texts=int(result.embedding_stats.get("misses", 0)),
            metrics=dict(result.aggregates),
        ))
    return ChunkSizeStudy(dataset=dataset.name, retrieval=base.retrieval.kind, k=k, queries=len(ids),
                          points=tuple(points), wall_s=time.perf_counter() - t0)


# --- reranking -----------------------------------------------------------------------------


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
    from .embedding import load_embedder
    from .metrics import ndcg_at_k, precision_at_k, recall_at_k
    from .reranking import evaluate_reranker, make_reranker, retrieve_candidates

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
            ranked = _ranked_units(hits[:n], candidates.unit)
            values["recall"].append(recall_at_k(rel, ranked, n))
            values["precision"].append(precision_at_k(rel, ranked, n))
            values["ndcg"].append(ndcg_at_k(rel, ranked, n))
        first[n] = {name: float(np.mean(v)) for name, v in values.items()}
    return RerankStudy(
        dataset=dataset.name, unit=candidates.unit, k=k, depths=tuple(depths), config=base,
        evaluations=tuple(evaluations), first_stage=first,
        mean_chunk_tokens=_mean_tokens(candidates.chunks), retrieval_ms=candidates.retrieval_ms,
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
    from .costs import Workload

    depth = max(study.depths) if depth is None else depth
    if depth not in study.depths:
        raise ValueError(f"depth={depth} was not studied; choose one of {list(study.depths)}")
    workload = workload or Workload()
    options = [
        ContextOption(label=f"first stage, top {n}", chunks=n, recall=m["recall"], precision=m["precision"],
                      context_tokens=n * study.mean_chunk_tokens,
                      usd_per_1k=_usd_per_1k(study.config, workload, chunk_tokens=study.mean_chunk_tokens, k=n),
                      added_ms=0.0)
        for n, m in sorted(study.first_stage.items())
    ]
    for evaluation in study.evaluations:
        s = next(s for s in evaluation.summaries if s.depth == depth)
        options.append(ContextOption(
            label=f"{evaluation.name}, top {study.k} of {depth}", chunks=study.k, recall=s.recall_after,
            precision=s.precision_after, context_tokens=study.k * study.mean_chunk_tokens,
            usd_per_1k=_usd_per_1k(study.config, workload, chunk_tokens=study.mean_chunk_tokens, k=study.k),
            added_ms=s.ms_per_query,
        ))
    return ContextTradeoff(dataset=study.dataset, unit=study.unit, depth=depth, options=tuple(options))


# --- retrievers and filters ------------------------------------------------------------------


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
    from .experiment import run_experiment

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
        result = run_experiment(config, dataset, query_ids=ids)
        results[label] = result
        points.append(RetrievalPoint(
            label=label, kind=retrieval.kind, fusion=retrieval.fusion if retrieval.kind == "hybrid" else "",
            dense_weight=retrieval.dense_weight if label.startswith("hybrid w=") else None,
            retrievers=2 if retrieval.kind == "hybrid" else 1,
            metrics=dict(result.aggregates), p50_ms=_percentile_ms(result, 50), p95_ms=_percentile_ms(result, 95),
        ))
    return RetrievalStudy(dataset=dataset.name, queries=len(ids), points=tuple(points), results=results)


@dataclass(frozen=True, kw_only=True)
class FilterStudy:
    """The same retrievers with and without a metadata filter that keeps each query's own documents.

    The filter is an oracle: it restricts a query to the `field` value of the documents judged
    relevant to it (e.g. the corpus it was asked about), i.e. the best a correct filter can do.
    `results[(retriever, filtered)]` hold the per-query rows.
    """

    dataset: str
    field: str
    queries: int
    results: Mapping[tuple[str, bool], ExperimentResult] = field(repr=False)
    metric_names: tuple[str, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per (retriever, filtered): metrics and p50/p95 latency in ms."""
        import pandas as pd

        rows = []
        for (label, filtered), result in self.results.items():
            rows.append({"retriever": label, "filter": "on" if filtered else "off",
                         **{m: result.aggregates.get(m, 0.0) for m in self.metric_names},
                         "p50_ms": _percentile_ms(result, 50), "p95_ms": _percentile_ms(result, 95)})
        return pd.DataFrame(rows)

    def effect(self, metric: str) -> Mapping[str, tuple[float, float]]:
        """retriever -> (change in `metric`, change in p50 latency ms) when the filter is on."""
        out = {}
        for (label, filtered), result in self.results.items():
            if filtered:
                off = self.results[(label, False)]
                out[label] = (result.aggregates.get(metric, 0.0) - off.aggregates.get(metric, 0.0),
                              _percentile_ms(result, 50) - _percentile_ms(off, 50))
        return out


def _merge(parts: Sequence[ExperimentResult], order: Sequence[str]) -> ExperimentResult:
    """Per-group results of one config as one result over `order`'s queries."""
    rows = {r.query_id: r for part in parts for r in part.rows}
    merged = tuple(rows[q] for q in order)
    names = list(dict.fromkeys(n for r in merged for n in r.metrics))
    aggregates = {n: sum(r.metrics.get(n, 0.0) for r in merged) / len(merged) for n in names} if merged else {}
    return dataclasses.replace(parts[0], rows=merged, aggregates=aggregates)


def filter_study(
    dataset: Dataset,
    *,
    field: str = "title",
    kinds: Sequence[str] = ("bm25", "dense", "hybrid"),
    base: PipelineConfig | None = None,
    query_ids: Sequence[str] | None = None,
) -> FilterStudy:
    """Each retriever kind with and without the oracle filter {field: value of the query's documents}.

    Args:
        dataset: documents whose metadata has `field`, and judgements.
        field: the document metadata field to filter on (chunks inherit document metadata).
        kinds: retriever kinds to compare.
        base: the rest of the pipeline; default `PipelineConfig()`.
        query_ids: which queries (default: every judged query whose relevant documents share
            one value of `field`).

    Raises:
        ValueError: no document has `field`, or no query's relevant documents share one value.
    """
    from .experiment import run_experiment

    base = base or PipelineConfig()
    value_of = {d.id: d.metadata[field] for d in dataset.documents if field in d.metadata}
    if not value_of:
        known = sorted({k for d in dataset.documents for k in d.metadata})
        raise ValueError(f"no document of {dataset.name!r} has metadata field {field!r}; known fields: {known}")
    groups: dict[Any, list[str]] = {}
    ids = list(query_ids) if query_ids is not None else dataset.evaluated_queries
    for qid in ids:
        values = {value_of.get(doc) for doc, grade in dataset.qrels.get(qid, {}).items() if grade > 0}
        if len(values) == 1 and None not in values:
            groups.setdefault(values.pop(), []).append(qid)
    order = [q for q in ids if any(q in g for g in groups.values())]
    if not order:
        raise ValueError(f"no query's relevant documents share one {field!r} value; pick another field")
    results: dict[tuple[str, bool], ExperimentResult] = {}
    for kind in kinds:
        config = dataclasses.replace(base, name=kind, retrieval=dataclasses.replace(base.retrieval, kind=kind),
                                     reranking=RerankingConfig())
        results[(kind, False)] = run_experiment(config, dataset, query_ids=order)
        parts = [run_experiment(config, dataset, query_ids=qids, where={field: value})
                 for value, qids in groups.items()]
        results[(kind, True)] = _merge(parts, order)
    names = tuple(dict.fromkeys(n for r in results.values() for n in r.aggregates))
    return FilterStudy(dataset=dataset.name, field=field, queries=len(order), results=results, metric_names=names)


# --- routing and costs -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RoutingStudy:
    """Routers fitted on a labelled training split, traced over thresholds on the test split."""

    tiers: tuple[str, ...]
    train: int
    test: int
    curves: Mapping[str, CostQualityCurve] = field(repr=False)
    labels_path: str

    def to_frame(self) -> pd.DataFrame:
        """One row per (router, threshold): cost share, quality retained, accuracy, tier shares."""
        import pandas as pd

        return pd.concat([c.to_frame().assign(router=name) for name, c in self.curves.items()], ignore_index=True)

    def operating_points(self, min_quality_retained: float = 0.95) -> Mapping[str, RoutingEvaluation]:
        """router -> its cheapest threshold keeping `min_quality_retained` of top-model quality."""
        return {name: c.operating_point(min_quality_retained) for name, c in self.curves.items()}

    def recommend(self, min_quality_retained: float = 0.95) -> tuple[str, RoutingEvaluation]:
        """The router whose operating point costs least (ties: higher quality)."""
        points = self.operating_points(min_quality_retained)
        name = min(points, key=lambda n: (points[n].cost_usd, -points[n].quality))
        return name, points[name]

    def routing_mix(self, router: str, min_quality_retained: float = 0.95) -> dict[str, float]:
        """The share of traffic per tier at `router`'s operating point (a `Workload.routing_mix`)."""
        if router not in self.curves:
            raise ValueError(f"unknown router {router!r}; this study has {sorted(self.curves)}")
        point = self.curves[router].operating_point(min_quality_retained)
        return {t: s for t, s in zip(self.tiers, point.tier_shares) if s > 0}


def routing_study(
    *,
    routers: Sequence[str] = ("rules", "learned"),
    config: RoutingConfig | None = None,
    labels_path: str | Path | None = None,
    test_share: float = 0.4,
    seed: int = 0,
    context_tokens: int = 1500,
    output_tokens: int = 300,
) -> RoutingStudy:
    """Fit routers on a stratified training split and trace their cost-quality curves on the rest.

    Quality per tier is `routing.tier_quality` of the labels (1 at or above the label's tier,
    halved per tier short: a stated proxy); cost per call is `routing.tier_costs` at list prices.

    Args:
        routers: router kinds: "rules" (no training), "learned" (query embeddings + classifier),
            "retrieval" (features of the retrieved hits over the bundled chunking set).
        config: tiers, classifier and rule settings; default `RoutingConfig()`.
        labels_path: a labelled routing file (CSV/JSONL); default the demo labels.
        test_share: share of the labels held out for the curves.
        seed: the split's seed.
        context_tokens: prompt tokens besides the query, per call.
        output_tokens: answer tokens per call.

    Raises:
        ValueError: an unknown router kind (the message lists the known ones).
    """
    from .routing import DEMO_LABELS, load_labels, make_router, sweep_thresholds, tier_costs, tier_quality

    known = ("rules", "learned", "retrieval")
    unknown = [r for r in routers if r not in known]
    if unknown or not routers:
        raise ValueError(f"unknown router kind(s) {unknown or list(routers)}; choose from {list(known)}")
    config = config or RoutingConfig()
    path = Path(labels_path) if labels_path is not None else DEMO_LABELS
    train, test = load_labels(path, config.tiers).split(test_share, seed=seed)
    n = len(config.tiers)
    quality, cost = tier_quality(test.label_index, n), tier_costs(
        test.queries, config.tiers, context_tokens=context_tokens, output_tokens=output_tokens)
    curves = {}
    for kind in routers:
        router = _fitted_router(kind, config, train, make_router)
        curves[kind] = sweep_thresholds(router.adequacy(test.queries), quality, cost, tiers=config.tiers,
                                        labels=test.label_index)
    return RoutingStudy(tiers=tuple(config.tiers), train=len(train.ids), test=len(test.ids), curves=curves,
                        labels_path=str(path))


def _fitted_router(kind: str, config: RoutingConfig, train: Any, make_router: Any) -> Any:
    """A scoring router of `kind`, fitted on `train` where it learns."""
    if kind == "rules":
        return make_router(dataclasses.replace(config, kind="rules"))
    from .embedding import load_embedder
    from .routing import LearnedRouter, RetrievalRouter

    embedder = load_embedder()
    if kind == "learned":
        return LearnedRouter.from_config(config, embedder).fit(train)
    from .chunking import make_chunker
    from .datasets import load_dataset
    from .retrieval import build_retriever

    chunker = make_chunker(ChunkingConfig())
    chunks = [c for d in load_dataset("chunking").documents for c in chunker.chunk(d)]
    retriever = build_retriever(RetrievalConfig(kind="dense"), chunks, embedder)
    return RetrievalRouter.from_config(config, retriever).fit(train)


def lever_summary(breakdown: CostBreakdown) -> str:
    """A few lines: the naive and final cost, and each lever's saving, largest first."""
    unit = "month" if breakdown.unit == "month" else "query"
    lines = [f"naive: ${breakdown.naive_total:,.2f} per {unit}; with every lever: ${breakdown.total:,.2f} "
             f"({1 - breakdown.total / breakdown.naive_total:.0%} less)" if breakdown.naive_total else
             "naive cost is 0"]
    for lever, saving in sorted(breakdown.savings.items(), key=lambda kv: -kv[1]):
        share = saving / breakdown.naive_total if breakdown.naive_total else 0.0
        lines.append(f"  {lever:15s} saves ${saving:,.2f} ({share:.0%} of the naive cost)")
    lines += [f"  note: {n}" for n in breakdown.notes]
    return "\n".join(lines)
