"""First-stage retrieval: BM25 over a sparse score matrix, dense FAISS indexes, hybrid fusion.

Every retriever answers `retrieve(query, k, where)` with `Hit`s ranked best first, and
`retrieve_many(queries, k, where)` for a batch. A metadata filter (`where`) is applied before
the top-k cut, so a filtered query still gets k hits whenever k matching chunks exist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..config import RetrievalConfig
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


RetrieverFactory = Callable[[RetrievalConfig, Sequence[Chunk], "Embedder | None"], Retriever]

RETRIEVERS: dict[str, RetrieverFactory] = {
    "bm25": BM25Retriever.from_config,
    "dense": DenseRetriever.from_config,
    "hybrid": HybridRetriever.from_config,
}


def build_retriever(config: RetrievalConfig, chunks: Sequence[Chunk], embedder: Embedder | None = None) -> Retriever:
    """Build the retriever `config.kind` names over `chunks`.

    Args:
        config: the retrieval settings.
        chunks: what to index (ids unique).
        embedder: required for "dense" and "hybrid".

    Returns:
        A `Retriever` (each of ours also has `retrieve_many`).

    Raises:
        ValueError: an unknown kind (the message lists the known ones), no chunks, duplicate
            chunk ids, or a missing embedder.
    """
    try:
        factory = RETRIEVERS[config.kind]
    except KeyError:
        raise ValueError(f"unknown retriever {config.kind!r}; choose one of {sorted(RETRIEVERS)}") from None
    check_chunks(chunks)
    return factory(config, chunks, embedder)
