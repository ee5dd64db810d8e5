"""Maximal marginal relevance: diversity among the reranked hits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..config import ConfigError, RerankingConfig
from ..types import Hit
from .base import _check_k

if TYPE_CHECKING:
    from ..embedding import Embedder
    from ..resources import Resources

__all__ = ["MMRReranker"]

class MMRReranker:
    """Maximal marginal relevance: trade relevance against redundancy with what is already chosen.

    Relevance is the input score min-max scaled to [0, 1] (so a hybrid's BM25 signal is kept,
    not replaced by dense cosine); redundancy is the largest cosine between a passage's
    embedding and those already picked. Each pick maximises
    `lam * relevance - (1 - lam) * redundancy` (Carbonell & Goldstein, 1998); `lam=1` keeps the
    input order. Passage embeddings come from the embedder's cache, so they cost nothing after
    indexing.
    """

    def __init__(self, embedder: Embedder, *, lam: float = 0.7) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"reranking.mmr_lambda={lam} must lie in [0, 1]")
        self.embedder = embedder
        self.lam = lam

    @classmethod
    def from_config(cls, config: RerankingConfig, resources: Resources) -> MMRReranker:
        """Build from `config.mmr_lambda` over `resources.load_embedder()`."""
        return cls(resources.load_embedder(), lam=config.mmr_lambda)

    def prepare(self, query: str) -> None:
        """No query-only work: MMR embeds the query with its candidates."""

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """Pick min(k, len(hits)) hits greedily by marginal relevance; scores are the MMR values."""
        _check_k(k)
        if not hits:
            return []
        raw = np.array([h.score for h in hits], dtype=np.float64)
        span = raw.max() - raw.min()
        relevance = (raw - raw.min()) / span if span > 0 else np.ones(len(hits))
        vectors = self.embedder.embed([h.chunk.text for h in hits]).astype(np.float64)
        similarity = vectors @ vectors.T
        redundancy = np.zeros(len(hits))
        chosen: list[int] = []
        values: list[float] = []
        free = np.ones(len(hits), dtype=bool)
        for _ in range(min(k, len(hits))):
            mmr = np.where(free, self.lam * relevance - (1 - self.lam) * redundancy, -np.inf)
            best = int(np.argmax(mmr))  # first maximum: ties keep input order
            chosen.append(best)
            values.append(float(mmr[best]))
            free[best] = False
            redundancy = np.maximum(redundancy, similarity[best])
        return [Hit(chunk=hits[i].chunk, score=v, rank=r + 1) for r, (i, v) in enumerate(zip(chosen, values))]

