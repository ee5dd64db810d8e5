"""The reranker contract and the helpers every reranker shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..types import Hit


__all__ = ["Reranker"]

# Rank fusion constant for `input_weight` (as in reciprocal rank fusion).
_RRF_K = 60


class Reranker(Protocol):
    """Reorders first-stage hits for a query; built by `Kind.from_config(config, resources)`.

    `prepare(query)` does the query-only work (e.g. encoding the query; a no-op for most), so
    `evaluate_reranker` can pay it once per query before reranking at each depth.
    """

    def prepare(self, query: str) -> None:
        """Do (and keep) the work that depends only on `query`."""
        ...

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best min(k, len(hits)) of `hits`, as new `Hit`s with new scores and ranks 1..k."""
        ...


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}; ask for at least one reranked hit")


def _top_k(hits: Sequence[Hit], scores: Sequence[float], k: int, input_weight: float = 0.0) -> list[Hit]:
    """Hits sorted by score (ties keep input order), cut to k and ranked 1..k.

    With `input_weight` > 0 the reranker's order is fused with the input order by weighted
    reciprocal rank fusion, so the first stage's signal (e.g. BM25's in a hybrid) is not discarded.
    """
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    if input_weight > 0:
        rank = {i: r for r, i in enumerate(order)}
        # Input position, not `Hit.rank`: callers may pass any slice of a ranking.
        fused = [
            (1 - input_weight) / (_RRF_K + rank[i] + 1) + input_weight / (_RRF_K + i + 1)
            for i in range(len(hits))
        ]
        scores = fused
        order = sorted(range(len(hits)), key=lambda i: -fused[i])
    return [Hit(chunk=hits[i].chunk, score=float(scores[i]), rank=r + 1) for r, i in enumerate(order[:k])]

