"""The experiment runner: the one place that wires the stages together.

`build_pipeline` chunks, embeds and indexes a dataset for a config (reusing, within a process,
any chunks and indexes an earlier config already built); `run_experiment` runs every evaluated
query through it and scores the rankings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import tracing
from .config import PipelineConfig, config_hash
from .datasets import Dataset
from .metrics import RANKING_METRICS, span_scores
from .resources import Resources
from .results import ExperimentResult, QueryRow, Response
from .types import Answer, Chunk, Hit, Span

if TYPE_CHECKING:
    from .embedding import Embedder
    from .generation import Generator
    from .reranking import Reranker
    from .retrieval import Filter, Retriever
    from .routing import CascadeRouter, Router

__all__ = [
    "QueryRow",
    "ExperimentResult",
    "Pipeline",
    "Response",
    "build_pipeline",
    "clear_caches",
    "needs_embedder",
    "run_experiment",
    "document_ranking",
]


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """A dataset chunked and indexed for one config, ready to answer queries."""

    config: PipelineConfig
    chunks: tuple[Chunk, ...]
    retriever: Retriever
    reranker: Reranker | None
    embedder: Embedder | None
    build_s: Mapping[str, float]

    def search(self, query: str, *, where: Filter | None = None) -> tuple[list[Hit], dict[str, float]]:
        """Retrieve (and rerank) for one query.

        Returns:
            The final hits, best first, and the seconds each stage took. With a reranker the
            reranked top k come first, then the rest of the first-stage hits in their order.
        """
        rr = self.config.reranking
        with tracing.request("search", query, self.config):  # a no-op inside `answer`'s request
            t0 = time.perf_counter()
            depth = max(self.config.retrieval.k, rr.candidates) if self.reranker else self.config.retrieval.k
            span = tracing.stage("retrieve", kind=self.config.retrieval.kind, depth=depth)
            hits = self.retriever.retrieve_many([query], depth, where)[0]
            span.end(hits=hits)  # a stage that raises ends, failed, with its request
            timings = {"retrieve": time.perf_counter() - t0}
            if self.reranker is not None and hits:
                t1 = time.perf_counter()
                span = tracing.stage("rerank", kind=rr.kind, candidates=rr.candidates, k=rr.k)
                top = self.reranker.rerank(query, hits[: rr.candidates], min(rr.k, len(hits[: rr.candidates])))
                span.end(hits=top)
                timings["rerank"] = time.perf_counter() - t1
                seen = {h.chunk.id for h in top}
                rest = [h for h in hits if h.chunk.id not in seen]
                hits = top + [dataclasses.replace(h, rank=len(top) + i + 1) for i, h in enumerate(rest)]
        return hits, timings


    @functools.cached_property
    def router(self) -> Router | None:
        """The router of this pipeline (None for a cascade, which routes by answering)."""
        from .routing import make_router

        if self.config.routing.kind == "cascade":
            return None
        return make_router(self.config.routing, self.resources)

    @functools.cached_property
    def resources(self) -> Resources:
        """What this pipeline's stages share: its embedder, chunks, retriever and answering model."""
        return Resources.for_config(self.config, embedder=self.embedder, chunks=self.chunks, retriever=self.retriever)

    @functools.cached_property
    def _generators(self) -> dict[str, Generator]:
        return {}

    def generator(self, model: str) -> Generator:
        """The generator for `model`, built once per pipeline."""
        from .generation import make_generator

        if model not in self._generators:
            config = dataclasses.replace(self.config.generation, model=model)
            self._generators[model] = make_generator(config, self.resources)
        return self._generators[model]

    def answer(
        self, query: str, *, where: Filter | None = None, on_text: Callable[[str], None] | None = None
    ) -> Response:
        """Route, retrieve, rerank and generate an answer for one query.

        A cascade router answers with the cheapest tier first and escalates while the answer's
        groundedness in the retrieved context stays under `routing.threshold`; every call it
        paid for is in `Response.attempts`.

        Args:
            query: the user's question.
            where: a metadata filter for retrieval.
            on_text: receives the answer's text as it streams.
        """
        with tracing.request("answer", query, self.config) as trace:
            timings: dict[str, float] = {}
            model = None
            if self.router is not None:
                t0 = time.perf_counter()
                span = tracing.stage("route", kind=self.config.routing.kind)
                model = self.router.route(query)
                span.end(model=model)
                timings["route"] = time.perf_counter() - t0
            hits, search_timings = self.search(query, where=where)
            timings.update(search_timings)
            context = hits[: self.config.generation.context_chunks]
            t1 = time.perf_counter()
            if model is None:
                outcome = self._cascade(context, on_text).run(query)
                model, answer, attempts = outcome.model, outcome.answer, outcome.attempts
            else:
                span = tracing.stage("generate", config=self.config.generation, model=model, context=context)
                answer = self.generator(model).generate(query, context, on_text=on_text)
                span.end(answer=answer, context=context)
                attempts = (answer,)
            timings["generate"] = time.perf_counter() - t1
            response = Response(
                query=query, model=model, hits=tuple(hits), answer=answer, attempts=attempts, stage_latency_s=timings
            )
            trace.record(response=response, context=context)
        return response

    def _cascade(self, context: Sequence[Hit], on_text: Callable[[str], None] | None) -> CascadeRouter:
        from .embedding import load_embedder
        from .metrics import groundedness
        from .routing import CascadeRouter

        embedder = self.embedder or load_embedder(self.config.embedding)
        texts = [h.chunk.text for h in context]

        def answer(query: str, model: str) -> Answer:
            span = tracing.stage("generate", config=self.config.generation, model=model, context=context)
            result = self.generator(model).generate(query, context, on_text=on_text)
            span.end(answer=result, context=context)
            return result

        return CascadeRouter(
            tiers=self.config.routing.tiers,
            answer=answer,
            judge=lambda _query, result: groundedness(result.text, texts, embedder.embed),
            threshold=self.config.routing.threshold,
        )


_CACHE_SIZE = 8
_chunk_cache: OrderedDict[tuple[Any, ...], tuple[tuple[Chunk, ...], float]] = OrderedDict()
_index_cache: OrderedDict[tuple[Any, ...], tuple[Any, float]] = OrderedDict()
_cache_lock = threading.Lock()


def _remember(cache: OrderedDict, key: tuple[Any, ...], make: Any) -> tuple[Any, float, bool]:
    with _cache_lock:
        if key in cache:
            cache.move_to_end(key)
            value, seconds = cache[key]
            return value, seconds, True
    t0 = time.perf_counter()
    value = make()
    seconds = time.perf_counter() - t0
    with _cache_lock:
        cache[key] = (value, seconds)
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    return value, seconds, False


def needs_embedder(config: PipelineConfig) -> bool:
    """Whether any stage of `config` embeds text."""
    return (
        config.retrieval.kind != "bm25"
        or config.chunking.method == "semantic"
        or config.reranking.kind in ("maxsim", "mmr")
    )


def clear_caches() -> None:
    """Forget the chunks and indexes this process has built (embeddings stay in their cache)."""
    with _cache_lock:
        _chunk_cache.clear()
        _index_cache.clear()


def build_pipeline(
    config: PipelineConfig, dataset: Dataset, *, embedder: Embedder | None = None
) -> Pipeline:
    """Chunk, embed and index `dataset` for `config`.

    Chunks are reused for every config with the same chunking and embedding settings, and
    indexes for every config that differs only in k, fusion or later stages (within this
    process; embeddings are reused across processes through the vector cache).
    """
    from .chunking import make_chunker
    from .embedding import load_embedder
    from .reranking import make_reranker
    from .retrieval import build_retriever

    if embedder is None and needs_embedder(config):
        embedder = load_embedder(config.embedding)
    fp = dataset.fingerprint()

    resources = Resources.for_config(config, embedder=embedder)

    def chunk_all() -> tuple[Chunk, ...]:
        chunker = make_chunker(config.chunking, resources)
        return tuple(c for doc in dataset.documents for c in chunker.chunk(doc))

    chunk_key = (fp, config.chunking, config.embedding.model)
    chunks, chunk_s, _ = _remember(_chunk_cache, chunk_key, chunk_all)
    index_config = dataclasses.replace(config.retrieval, k=1)
    index_key = (chunk_key, index_config, config.embedding if config.retrieval.kind != "bm25" else None)

    def index() -> Retriever:  # dense indexes embed their chunks with a progress bar
        return build_retriever(config.retrieval, chunks, embedder if config.retrieval.kind != "bm25" else None)

    retriever, index_s, _ = _remember(_index_cache, index_key, index)
    reranker = make_reranker(config.reranking, resources)
    return Pipeline(
        config=config,
        chunks=chunks,
        retriever=retriever,
        reranker=reranker,
        embedder=embedder,
        build_s={"chunk": chunk_s, "index": index_s},
    )


def document_ranking(hits: Sequence[Hit]) -> list[str]:
    """Document ids in order of their best chunk's rank."""
    return list(dict.fromkeys(h.chunk.doc_id for h in hits))


def _query_metrics(config: PipelineConfig, dataset: Dataset, qid: str, hits: Sequence[Hit]) -> dict[str, float]:
    ev = config.evaluation
    metrics: dict[str, float] = {}
    relevance = dataset.qrels.get(qid)
    if relevance:
        docs = document_ranking(hits)
        for name in ("ndcg", "precision", "recall", "mrr", "hit_rate"):
            metrics[f"{name}@{ev.k}"] = RANKING_METRICS[name](relevance, docs, ev.k)
        metrics[f"recall@{ev.recall_k}"] = RANKING_METRICS["recall"](relevance, docs, ev.recall_k)
        metrics[f"map@{ev.recall_k}"] = RANKING_METRICS["map"](relevance, docs, ev.recall_k)
    references = dataset.spans.get(qid)
    if references:
        retrieved = [Span(doc_id=h.chunk.doc_id, start=h.chunk.start, end=h.chunk.end) for h in hits[: ev.span_k]]
        s = span_scores(retrieved, references)
        metrics[f"span_recall@{ev.span_k}"] = s.recall
        metrics[f"span_precision@{ev.span_k}"] = s.precision
        metrics[f"span_iou@{ev.span_k}"] = s.iou
    return metrics


def run_experiment(
    config: PipelineConfig,
    dataset: Dataset,
    *,
    embedder: Embedder | None = None,
    where: Filter | None = None,
    progress: bool = False,
    query_ids: Sequence[str] | None = None,
) -> ExperimentResult:
    """Run every evaluated query of `dataset` through `config` and score the rankings.

    Args:
        config: the pipeline.
        dataset: documents, queries and judgements.
        embedder: a specific embedder (its cache and counters); by default the process-wide one.
        where: a metadata filter applied to every query.
        progress: show a progress bar over the queries (embedding shows its own when it computes).
        query_ids: evaluate only these queries (default: every query with judgements).

    Returns:
        Per-query rows and mean metrics. Documents count at their best chunk's rank.
    """
    from tqdm.auto import tqdm

    from .embedding import load_embedder

    started = dt.datetime.now(dt.timezone.utc)
    if embedder is None and needs_embedder(config):
        embedder = load_embedder(config.embedding)
    stats_before = dataclasses.asdict(embedder.stats) if embedder else {}
    pipeline = build_pipeline(config, dataset, embedder=embedder)
    ids = list(query_ids) if query_ids is not None else dataset.evaluated_queries
    unknown = [q for q in ids if q not in dataset.queries]
    if unknown:
        raise ValueError(f"unknown query ids {unknown[:5]}; pick ids from dataset.queries")
    rows = []
    for qid in tqdm(ids, desc=f"queries ({config.name})", disable=not progress):
        query = dataset.queries[qid]
        t0 = time.perf_counter()
        hits, stages = pipeline.search(query, where=where)
        latency = time.perf_counter() - t0
        rows.append(
            QueryRow(
                query_id=qid,
                query=query,
                chunk_ids=tuple(h.chunk.id for h in hits),
                retrieved=tuple(document_ranking(hits)),
                scores=tuple(float(h.score) for h in hits),
                metrics=_query_metrics(config, dataset, qid, hits),
                latency_s=latency,
                stage_latency_s=stages,
            )
        )
    names = list(dict.fromkeys(name for r in rows for name in r.metrics))
    aggregates = {n: sum(r.metrics.get(n, 0.0) for r in rows) / len(rows) for n in names} if rows else {}
    stats_after = dataclasses.asdict(embedder.stats) if embedder else {}
    return ExperimentResult(
        config=config,
        config_hash=config_hash(config),
        dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint(),
        rows=tuple(rows),
        aggregates=aggregates,
        n_chunks=len(pipeline.chunks),
        build_s=pipeline.build_s,
        embedding_stats={k: stats_after[k] - stats_before.get(k, 0) for k in stats_after},
        started_at=started.isoformat(),
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat(),
    )
