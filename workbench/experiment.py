"""The experiment runner: the one place that wires the stages together.

`build_pipeline` chunks, embeds and indexes a dataset for a config (reusing, within a process,
any chunks and indexes an earlier config already built); `run_experiment` runs every evaluated
query through it and scores the rankings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .tracing import spans as tracing  # the recording side only: the trace store sits above the runner
from .config import PipelineConfig, config_hash
from .datasets import Dataset
from .metrics import RANKING_METRICS, span_scores
from .registry import REGISTRIES
from .resources import Resources
from .results import ExperimentResult, QueryRow, Response
from .types import Answer, Chunk, Hit, Span, Usage

if TYPE_CHECKING:
    import numpy as np

    from .batches import BatchRun, Ledger, PollPolicy
    from .embedding import Embedder
    from .generation import Generator
    from .reranking import Reranker
    from .response_cache import ResponseCache
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
            vectors, timings = self._embed_query(query) if _embeds_queries(self.config) else (None, {})
            t0 = time.perf_counter()
            depth = max(self.config.retrieval.k, rr.candidates) if self.reranker else self.config.retrieval.k
            span = tracing.stage("retrieve", kind=self.config.retrieval.kind, depth=depth)
            hits = self.retriever.retrieve_many([query], depth, where, vectors=vectors)[0]
            span.end(hits=hits)  # a stage that raises ends, failed, with its request
            timings["retrieve"] = time.perf_counter() - t0
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


    def _embed_query(self, query: str) -> tuple[np.ndarray, dict[str, float]]:
        """The query's vector, embedded as its own timed stage ("embed", or "embed_cached" when read).

        The retriever searches with this vector, so "retrieve" is the search alone, and a config
        whose queries another config already embedded is not shown as if its retrieval were free.
        """
        assert self.embedder is not None  # every retrieval kind but bm25 embeds (needs_embedder)
        misses = self.embedder.stats.misses
        t0 = time.perf_counter()
        span = tracing.stage("embed", model=self.embedder.model_id)
        vectors = self.embedder.embed([query])
        cached = self.embedder.stats.misses == misses
        span.end(cached=cached)
        return vectors, {"embed_cached" if cached else "embed": time.perf_counter() - t0}

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

    @functools.cached_property
    def response_cache(self) -> ResponseCache | None:
        """The response cache `config.response_cache` enables, scoped to this config and corpus."""
        from .embedding import load_embedder
        from .response_cache import corpus_version, open_response_cache

        semantic = self.config.response_cache.mode == "semantic"
        embedder = self.embedder or (load_embedder(self.config.embedding) if semantic else None)
        return open_response_cache(self.config, corpus_version(self.chunks), embedder)

    def _cached(self, query: str, trace: Any) -> Response | None:
        """The response cache's answer to `query` as a response (marked, costing nothing), or None."""
        t0 = time.perf_counter()
        span = tracing.stage("response_cache", mode=self.config.response_cache.mode)
        hit = self.response_cache.get(query)  # type: ignore[union-attr]
        if hit is None:
            span.end(hit=False)
            return None
        span.end(hit=True, kind=hit.kind, similarity=hit.similarity, age_s=hit.age_s)
        seconds = time.perf_counter() - t0
        served = dataclasses.replace(hit.answer, usage=Usage(model=hit.answer.usage.model, latency_s=seconds))
        response = Response(query=query, model=served.usage.model, hits=(), answer=served, attempts=(),
                            stage_latency_s={"response_cache": seconds}, cache_hit=hit)
        trace.record(response=response, context=(), cache_hit=hit.kind, cache_similarity=hit.similarity)
        return response

    def answer(
        self,
        query: str,
        *,
        where: Filter | None = None,
        on_text: Callable[[str], None] | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """Route, retrieve, rerank and generate an answer for one query.

        With `response_cache.mode` on, a cached answer to the same (or, semantic, a similar)
        question is served first, marked in `Response.cache_hit` and the trace; a new answer
        is stored. A cascade router answers with the cheapest tier first and escalates while
        the answer's groundedness in the retrieved context stays under `routing.threshold`;
        every call it paid for is in `Response.attempts`.

        Args:
            query: the user's question.
            where: a metadata filter for retrieval (a filtered query bypasses the cache).
            on_text: receives the answer's text as it streams (a cached answer is sent whole).
            history: earlier (user, assistant) turns, already fitted to `budget.history_tokens`
                (`workbench.conversation` does that); a follow-up bypasses the cache.

        Raises:
            BudgetError: the question alone exceeds `budget.context_tokens`.
        """
        with tracing.request("answer", query, self.config) as trace:
            use_cache = where is None and not history and self.response_cache is not None
            if use_cache and (cached := self._cached(query, trace)) is not None:
                if on_text is not None:
                    on_text(cached.answer.text)
                return cached
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
            context, dropped = self._fit(query, hits[: self.config.generation.context_chunks])
            t1 = time.perf_counter()
            if model is None:
                outcome = self._cascade(context, on_text).run(query)
                model, answer, attempts = outcome.model, outcome.answer, outcome.attempts
            else:
                span = tracing.stage("generate", config=self.config.generation, model=model, context=context)
                generator = self.generator(model)
                # Claude takes the turns; a generator without `history` answers the question alone
                takes = history and "history" in inspect.signature(generator.generate).parameters
                extra = {"history": history} if takes else {}
                answer = generator.generate(query, context, on_text=on_text, **extra)
                span.end(answer=answer, context=context)
                attempts = (answer,)
            timings["generate"] = time.perf_counter() - t1
            response = Response(
                query=query, model=model, hits=tuple(hits), answer=answer, attempts=attempts, stage_latency_s=timings,
                dropped=dropped,
            )
            if use_cache and hits:  # an answer from no passages is not worth keeping
                self.response_cache.put(query, answer)  # type: ignore[union-attr]
            trace.record(response=response, context=context)
        return response

    def _fit(self, query: str, context: Sequence[Hit]) -> tuple[list[Hit], tuple[str, ...]]:
        """The passages within `budget.context_tokens` and the ids of those dropped (no budget: all)."""
        if not self.config.budget.context_tokens:
            return list(context), ()
        from .budget import fit_context

        fitted = fit_context(query, context, self.config.budget)
        return list(fitted.context), fitted.dropped

    def answer_batch(
        self, queries: Mapping[str, str], *, ledger: Ledger | None = None, key: str | None = None,
        poll: PollPolicy | None = None,
    ) -> tuple[dict[str, Response], BatchRun]:
        """Retrieve for every query now and generate every answer in one Message Batch (the batch
        price, asynchronous). With `ledger` and `key`, a batch in flight is resumed after a restart.

        Returns:
            The responses of the queries that succeeded, and the batch run (failures, cost, polls).

        Raises:
            ValueError: generation is not Claude, or the router is a cascade (it routes by answering).
        """
        from .batches import PollPolicy, answer_requests, answers_from, run_batch
        from .generation import anthropic_client

        gen = self.config.generation
        if gen.kind != "anthropic" or self.router is None:
            raise ValueError("answer_batch needs generation.kind='anthropic' and a router other than 'cascade'")
        searched = {}
        for n, (qid, query) in enumerate(queries.items()):
            hits, timings = self.search(query)
            context, dropped = self._fit(query, hits[: gen.context_chunks])
            searched[f"q{n}"] = (qid, query, self.router.route(query), hits, context, dropped, timings)
        requests = [r for cid, (_, q, model, _, ctx, _, _) in searched.items()
                    for r in answer_requests(gen, [(cid, q, ctx)], model=model)]
        client = anthropic_client(base_url=gen.base_url or None, timeout=gen.timeout_s)
        run = run_batch(client, requests, key=key, ledger=ledger, poll=poll or PollPolicy(), cache_ttl=gen.cache_ttl)
        answers = answers_from(run, {cid: item[4] for cid, item in searched.items()})
        return {
            qid: Response(query=q, model=model, hits=tuple(hits), answer=answers[cid], attempts=(answers[cid],),
                          stage_latency_s=timings, dropped=dropped)
            for cid, (qid, q, model, hits, _, dropped, timings) in searched.items() if cid in answers
        }, run

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
    """Whether any stage of `config` embeds text (the stage registries mark the kinds that do)."""
    return (
        _embeds_queries(config)
        or REGISTRIES["chunking.method"].embeds(config.chunking.method)
        or REGISTRIES["reranking.kind"].embeds(config.reranking.kind)
    )


def _embeds_queries(config: PipelineConfig) -> bool:
    """Whether the retriever of `config` embeds (dense and hybrid do, BM25 does not)."""
    return REGISTRIES["retrieval.kind"].embeds(config.retrieval.kind)


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
    index_key = (chunk_key, index_config, config.embedding if _embeds_queries(config) else None)

    def index() -> Retriever:  # dense indexes embed their chunks with a progress bar
        return build_retriever(config.retrieval, chunks, embedder if _embeds_queries(config) else None)

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
