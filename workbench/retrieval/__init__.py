"""First-stage retrieval: BM25 over a sparse score matrix, dense FAISS indexes, hybrid fusion.

Every retriever answers `retrieve_many(queries, k, where)` (the `Retriever` protocol) with
`Hit`s ranked best first, and `retrieve(query, k, where)` for one query; each is built by
`Kind.from_config(config, resources)` from the `RETRIEVERS` registry. A metadata filter
(`where`) is applied before the top-k cut, so a filtered query still gets k hits whenever k
matching chunks exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import RetrievalConfig
from ..registry import REGISTRIES, Registry
from ..resources import Resources
from ..types import Chunk
from .base import OPERATORS, Filter, Retriever, check_chunks, compile_filter, filter_mask, top_k
from .bm25 import ENGLISH_STOPWORDS, STOPWORD_LISTS, TOKEN_PATTERN, BM25Retriever, Bm25Index, Bm25Tokenizer
from .dense import DenseRetriever
from .hybrid import FUSIONS, HybridRetriever, reciprocal_rank_fusion, weighted_score_fusion

if TYPE_CHECKING:
    from ..embedding import Embedder

__all__ = [
    "Filter",
    "Retriever",
    "OPERATORS",
    "compile_filter",
    "filter_mask",
    "top_k",
    "ENGLISH_STOPWORDS",
    "STOPWORD_LISTS",
    "TOKEN_PATTERN",
    "Bm25Tokenizer",
    "Bm25Index",
    "BM25Retriever",
    "DenseRetriever",
    "HybridRetriever",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
    "FUSIONS",
    "RETRIEVERS",
    "build_retriever",
]


RETRIEVERS: Registry = REGISTRIES["retrieval.kind"]  # name -> retriever class (see workbench.registry)


def build_retriever(
    config: RetrievalConfig, chunks: Sequence[Chunk], embedder: Embedder | None = None, *,
    resources: Resources | None = None,
) -> Retriever:
    """Build the retriever `config.kind` names: `RETRIEVERS[kind].from_config(config, resources)`.

    Args:
        config: the retrieval settings.
        chunks: what to index (ids unique).
        embedder: required for "dense" and "hybrid".
        resources: the pipeline's shared resources (their chunks and embedder are replaced by
            the two arguments above).

    Returns:
        A `Retriever`.

    Raises:
        ValueError: an unknown kind (the message lists the known ones), no chunks, duplicate
            chunk ids, or a missing embedder.
    """
    RETRIEVERS.check(config.kind, "retriever")
    check_chunks(chunks)
    resources = dataclasses.replace(resources or Resources(), chunks=chunks, embedder=embedder)
    return RETRIEVERS[config.kind].from_config(config, resources)
