"""Chunk size study: every chunker x size x overlap, its quality and what its context costs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import PipelineConfig, RetrievalConfig
from ..experiment import build_pipeline
from ..runs import evaluate
from ..tokens import estimate_tokens
from .common import Recommendation, default_workload, mean_tokens, recommend, usd_per_1k

if TYPE_CHECKING:
    import pandas as pd

    from ..costs import Workload
    from ..datasets import Dataset

__all__ = ["ChunkSizePoint", "ChunkSizeStudy", "chunk_size_study"]


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
    workload = workload or default_workload(dataset, ids)
    t0 = time.perf_counter()
    points = []
    for method, size, overlap in combos:
        chunking = dataclasses.replace(base.chunking, method=method, size=size, overlap=overlap)
        config = dataclasses.replace(base, name=f"{method}-{size}-{overlap}", chunking=chunking)
        result = evaluate(config, dataset, query_ids=ids).result  # recorded, or served from the run store
        chunks = build_pipeline(config, dataset).chunks  # the runner's in-process cache: no rebuild
        text = {c.id: c.text for c in chunks}
        context = float(np.mean([sum(estimate_tokens(text[c]) for c in r.chunk_ids[:k]) for r in result.rows])
                        ) if result.rows else 0.0
        points.append(ChunkSizePoint(
            method=method, size=size, overlap=overlap, n_chunks=result.n_chunks,
            mean_chunk_tokens=mean_tokens(chunks),
            context_tokens=context,
            usd_per_1k=usd_per_1k(config, workload, chunk_tokens=context / k, k=k),
            build_s=float(sum(result.build_s.values())),
            embedded_texts=int(result.embedding_stats.get("misses", 0)),
            metrics=dict(result.aggregates),
        ))
    return ChunkSizeStudy(dataset=dataset.name, retrieval=base.retrieval.kind, k=k, queries=len(ids),
                          points=tuple(points), wall_s=time.perf_counter() - t0)
