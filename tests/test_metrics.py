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
    # retrieved d[0,30) = 30 chars; reference 20 chars; shared d[10,20) = 10
    assert s.recall == pytest.approx(10 / 20)
    assert s.precision == pytest.approx(10 / 30)
    assert s.iou == pytest.approx(10 / 40)
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
    assert span_scores(g, g).iou == pytest.approx(1.0)
