"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.metrics import (
    average_precision,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    span_scores,
)
from workbench.types import Span

REL = {"a": 3, "b": 1, "c": 0, "d": 2}  # c is judged not relevant


def test_ndcg_graded_by_hand() -> None:
    ranked = ["b", "x", "a", "c"]
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(REL, ranked, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(REL, ["a", "d", "b"], 3) == pytest.approx(1.0)
    assert ndcg_at_k(REL, ranked, 1) == pytest.approx(1 / 3)
    assert ndcg_at_k({}, ranked, 10) == 0.0


def test_recall_precision_mrr_hit_rate_by_hand() -> None:
    ranked = ["x", "c", "d", "a"]
    assert recall_at_k(REL, ranked, 3) == pytest.approx(1 / 3)
    assert recall_at_k(REL, ranked, 4) == pytest.approx(2 / 3)
    assert precision_at_k(REL, ranked, 4) == pytest.approx(2 / 4)
    assert precision_at_k(REL, ranked, 10) == pytest.approx(2 / 10)
    assert mrr_at_k(REL, ranked, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(REL, ranked, 2) == 0.0
    assert hit_rate_at_k(REL, ranked, 2) == 0.0
    assert hit_rate_at_k(REL, ranked, 3) == 1.0


def test_average_precision_by_hand() -> None:
    # relevant a, b, d; found at ranks 1 and 3 -> (1/1 + 2/3) / 3
    assert average_precision(REL, ["a", "x", "d"]) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision(REL, ["a", "x", "d"], k=1) == pytest.approx(1 / 3)


@pytest.mark.parametrize("fn", [ndcg_at_k, recall_at_k, precision_at_k, mrr_at_k, hit_rate_at_k])
def test_k_must_be_positive(fn) -> None:
    with pytest.raises(ValueError, match="k must be positive, got 0"):
        fn(REL, ["a"], 0)


def test_span_scores_by_hand() -> None:
    refs = [Span(doc_id="d", start=10, end=20), Span(doc_id="e", start=0, end=10)]
    got = [Span(doc_id="d", start=0, end=15), Span(doc_id="d", start=12, end=30)]
    s = span_scores(got, refs)
    # retrieved d[0,30) = 30 distinct chars, 15 + 18 = 33 as sent; reference 20 chars; shared d[10,20) = 10
    assert s.recall == pytest.approx(10 / 20)
    assert s.unique_precision == pytest.approx(10 / 30)
    assert s.unique_iou == pytest.approx(10 / 40)
    # Chroma's definitions: d[12,15) counts twice; iou adds the 10 reference chars not retrieved (e[0,10))
    assert s.precision == pytest.approx(10 / 33)
    assert s.iou == pytest.approx(10 / 43)
    assert span_scores([], refs).recall == 0.0
    with pytest.raises(ValueError, match="at least one reference"):
        span_scores(got, [])


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 50)), min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 200), st.integers(1, 50)), min_size=1, max_size=4))
def test_span_scores_bounds(retrieved, references) -> None:
    r = [Span(doc_id="d", start=a, end=a + n) for a, n in retrieved]
    g = [Span(doc_id="d", start=a, end=a + n) for a, n in references]
    s = span_scores(r, g)
    assert 0 <= s.iou <= min(s.recall, s.precision) <= 1
    assert 0 <= s.unique_iou <= min(s.recall, s.unique_precision) <= 1
    assert s.precision <= s.unique_precision and s.iou <= s.unique_iou
    assert span_scores(g, g).unique_iou == pytest.approx(1.0)
    disjoint = [Span(doc_id="d", start=300 * i, end=300 * i + n) for i, (_, n) in enumerate(references)]
    assert span_scores(disjoint, disjoint).iou == pytest.approx(1.0)


def _chroma_scores(chunks: list[tuple[int, int]], references: list[tuple[int, int]]) -> tuple[float, float, float]:
    """Chroma's chunking-evaluation scoring, transcribed loop for loop (one corpus, disjoint references)."""
    def union(ranges):
        out: list[list[int]] = []
        for a, b in sorted(ranges):
            if out and a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
        return [tuple(x) for x in out]

    def difference(ranges, cut):
        out = []
        for a, b in ranges:
            if cut[1] <= a or cut[0] >= b:
                out.append((a, b))
                continue
            if a < cut[0]:
                out.append((a, cut[0]))
            if cut[1] < b:
                out.append((cut[1], b))
        return out

    numerator, unused = [], list(references)
    for cs, ce in chunks:
        for rs, re_ in references:
            lo, hi = max(cs, rs), min(ce, re_)
            if lo < hi:
                unused = difference(unused, (lo, hi))
                numerator = union([(lo, hi)] + numerator)
    inter = sum(b - a for a, b in numerator)
    precision_den = sum(b - a for a, b in chunks)
    recall = inter / sum(b - a for a, b in references)
    return recall, inter / precision_den, inter / (precision_den + sum(b - a for a, b in unused))


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 120)), min_size=1, max_size=6),
       st.lists(st.integers(1, 40), min_size=1, max_size=3))
def test_span_scores_match_chroma_on_overlapping_chunks(chunks, lengths) -> None:
    refs, start = [], 5
    for n in lengths:  # disjoint references, as in Chroma's question sets
        refs.append((start, start + n))
        start += n + 37
    ours = span_scores([Span(doc_id="c", start=a, end=a + n) for a, n in chunks],
                       [Span(doc_id="c", start=a, end=b) for a, b in refs])
    recall, precision, iou = _chroma_scores([(a, a + n) for a, n in chunks], refs)
    assert (ours.recall, ours.precision, ours.iou) == pytest.approx((recall, precision, iou))
