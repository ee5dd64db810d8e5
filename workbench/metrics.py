"""Evaluation metrics as pure functions.

Ranking metrics take `relevance` (document id -> graded relevance; > 0 means relevant) and a
ranked list of ids. Gains are linear in the grade and discounts log2(rank + 1), as in
trec_eval / pytrec_eval (and so BEIR). Span metrics follow Chroma's chunking evaluation: the
characters of the retrieved chunks against the characters of the reference excerpts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .types import Span

__all__ = [
    "ndcg_at_k",
    "recall_at_k",
    "precision_at_k",
    "mrr_at_k",
    "average_precision",
    "hit_rate_at_k",
    "span_scores",
    "SpanScores",
    "RANKING_METRICS",
]


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")


def _relevant(relevance: Mapping[str, int]) -> set[str]:
    return {doc for doc, grade in relevance.items() if grade > 0}


def ndcg_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Normalised discounted cumulative gain of the first k of `ranked`, graded, linear gains."""
    _check_k(k)
    dcg = sum(relevance.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if relevance.get(doc, 0) > 0)
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Fraction of the relevant ids found in the first k of `ranked`."""
    _check_k(k)
    relevant = _relevant(relevance)
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def precision_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Fraction of the first k positions holding a relevant id (short lists count as misses)."""
    _check_k(k)
    relevant = _relevant(relevance)
    return sum(doc in relevant for doc in ranked[:k]) / k


def mrr_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Reciprocal rank of the first relevant id within the first k, else 0."""
    _check_k(k)
    relevant = _relevant(relevance)
    return next((1.0 / (i + 1) for i, doc in enumerate(ranked[:k]) if doc in relevant), 0.0)


def average_precision(relevance: Mapping[str, int], ranked: Sequence[str], k: int | None = None) -> float:
    """Average precision over the (first k of the) ranking, divided by all relevant ids (MAP's term)."""
    if k is not None:
        _check_k(k)
    relevant = _relevant(relevance)
    if not relevant:
        return 0.0
    found, total = 0, 0.0
    for i, doc in enumerate(ranked[:k] if k else ranked):
        if doc in relevant:
            found += 1
            total += found / (i + 1)
    return total / len(relevant)


def hit_rate_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """1.0 when any relevant id is in the first k, else 0.0."""
    _check_k(k)
    return float(bool(_relevant(relevance) & set(ranked[:k])))


RANKING_METRICS: dict[str, Callable[[Mapping[str, int], Sequence[str], int], float]] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "mrr": mrr_at_k,
    "map": average_precision,
    "hit_rate": hit_rate_at_k,
}


# --- span metrics -------------------------------------------------------------------------

Interval = tuple[int, int]


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[list[int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _length(intervals: Iterable[Interval]) -> int:
    return sum(b - a for a, b in intervals)


def _intersection(a: list[Interval], b: list[Interval]) -> int:
    total, i, j = 0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


@dataclass(frozen=True)
class SpanScores:
    """Character-level recall, precision and IoU of retrieved text against reference text."""

    recall: float
    precision: float
    iou: float


def span_scores(retrieved: Sequence[Span], references: Sequence[Span]) -> SpanScores:
    """Character-level recall, precision and IoU of retrieved spans against reference spans.

    Overlapping retrieved chunks count their shared characters once. recall = |R & G| / |G|,
    precision = |R & G| / |R|, iou = |R & G| / |R | G| (Chroma's chunking evaluation).

    Raises:
        ValueError: no reference spans (nothing to score against).
    """
    if not references:
        raise ValueError("span_scores needs at least one reference span")
    docs = {s.doc_id for s in (*retrieved, *references)}
    inter = got = want = 0
    for doc in docs:
        r = _union((s.start, s.end) for s in retrieved if s.doc_id == doc)
        g = _union((s.start, s.end) for s in references if s.doc_id == doc)
        shared = _intersection(r, g)
        inter += shared
        got += _length(r)
        want += _length(g)
    union = got + want - inter
    return SpanScores(
        recall=inter / want if want else 0.0,
        precision=inter / got if got else 0.0,
        iou=inter / union if union else 0.0,
    )
