"""Hybrid retrieval: dense and BM25 hit lists merged by a fusion function chosen by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..config import RetrievalConfig
from ..types import Chunk, Hit
from .base import Filter, check_k
from .bm25 import BM25Retriever
from .dense import DenseRetriever

if TYPE_CHECKING:
    import numpy as np

    from ..embedding import Embedder
    from ..resources import Resources

__all__ = ["reciprocal_rank_fusion", "weighted_score_fusion", "FUSIONS", "HybridRetriever"]


def reciprocal_rank_fusion(dense: Sequence[Hit], sparse: Sequence[Hit], *, rrf_k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion (Cormack et al., 2009): score(c) = sum over lists of 1 / (rrf_k + rank).

    Args:
        dense, sparse: two ranked hit lists (ranks 1-based).
        rrf_k: the damping constant; 60 in the paper.

    Returns:
        Every chunk of either list, best first, ranked 1..n; ties broken as `_fuse` says, so
        swapping the two lists never changes the order.
    """
    return _fuse([(dense, lambda h: 1.0 / (rrf_k + h.rank)), (sparse, lambda h: 1.0 / (rrf_k + h.rank))])


def _min_max(hits: Sequence[Hit]) -> Callable[[Hit], float]:
    if not hits:
        return lambda h: 0.0
    low, high = min(h.score for h in hits), max(h.score for h in hits)
    if high == low:
        return lambda h: 1.0
    return lambda h: (h.score - low) / (high - low)


def weighted_score_fusion(dense: Sequence[Hit], sparse: Sequence[Hit], *, dense_weight: float = 0.5) -> list[Hit]:
    """Convex combination of min-max normalised scores: w * dense + (1 - w) * sparse.

    A chunk missing from one list gets 0 from it; a list whose scores are all equal maps them to 1.

    Args:
        dense, sparse: two hit lists with their raw scores.
        dense_weight: w, in [0, 1].

    Returns:
        Every chunk of either list, best first, ranked 1..n; ties broken as `_fuse` says.
    """
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight={dense_weight} must lie in [0, 1]")
    dense_norm, sparse_norm = _min_max(dense), _min_max(sparse)
    return _fuse([(dense, lambda h: dense_weight * dense_norm(h)), (sparse, lambda h: (1 - dense_weight) * sparse_norm(h))])


def _fuse(parts: Sequence[tuple[Sequence[Hit], Callable[[Hit], float]]]) -> list[Hit]:
    """Sum each chunk's contributions; rank by score, ties by best rank in any list, then chunk id.

    The tie-break depends only on the hits, never on which list came first: with argument order
    as the tie-break, swapping dense and sparse moved Cranfield's nDCG@10 by 0.008.
    """
    chunks: dict[str, Chunk] = {}
    scores: dict[str, float] = {}
    best: dict[str, int] = {}
    for hits, contribution in parts:
        for hit in hits:
            cid = hit.chunk.id
            chunks.setdefault(cid, hit.chunk)
            scores[cid] = scores.get(cid, 0.0) + contribution(hit)
            best[cid] = min(best.get(cid, hit.rank), hit.rank)
    ranked = sorted(scores, key=lambda cid: (-scores[cid], best[cid], cid))
    return [Hit(chunk=chunks[cid], score=scores[cid], rank=r) for r, cid in enumerate(ranked, 1)]


Fusion = Callable[[Sequence[Hit], Sequence[Hit], RetrievalConfig], list[Hit]]

FUSIONS: dict[str, Fusion] = {
    "rrf": lambda dense, sparse, config: reciprocal_rank_fusion(dense, sparse, rrf_k=config.rrf_k),
    "weighted": lambda dense, sparse, config: weighted_score_fusion(dense, sparse, dense_weight=config.dense_weight),
}


class HybridRetriever:
    """Dense and BM25 retrieval fused by a function from `FUSIONS`; both sides see the filter."""

    def __init__(self, dense: DenseRetriever, sparse: BM25Retriever, config: RetrievalConfig) -> None:
        """Fuse `dense` and `sparse` as `config.fusion` says, from `config.fusion_depth` candidates each.

        Raises:
            ValueError: an unknown fusion name.
        """
        if config.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {config.fusion!r}; choose one of {sorted(FUSIONS)}")
        self.dense = dense
        self.sparse = sparse
        self.config = config
        self._fuse = FUSIONS[config.fusion]

    @classmethod
    def from_config(cls, config: RetrievalConfig, resources: Resources) -> HybridRetriever:
        """Build both sides over `resources.chunks`.

        Raises:
            ValueError: `resources.embedder` is None, or no chunks.
        """
        dense = DenseRetriever.from_config(config, resources)
        return cls(dense, BM25Retriever.from_config(config, resources), config)

    def retrieve(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The k best fused chunks for `query` among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
        """
        return self.retrieve_many([query], k, where)[0]

    def retrieve_many(
        self, queries: Sequence[str], k: int, where: Filter | None = None, *, vectors: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """`retrieve` for each query, batching the dense side (from `vectors` when given)."""
        check_k(k)
        depth = max(self.config.fusion_depth, k)
        dense = self.dense.retrieve_many(queries, depth, where, vectors=vectors)
        sparse = self.sparse.retrieve_many(queries, depth, where)
        return [self._fuse(d, s, self.config)[:k] for d, s in zip(dense, sparse)]

