"""Tests of workbench.stats against hand-computed cases and SciPy's reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from workbench.stats import (
    MIN_QUERIES,
    compare_paired,
    paired_bootstrap_ci,
    paired_randomization_test,
    pareto_frontier,
)


def test_randomization_exact_matches_hand_count():
    # diffs (1, 1, 1): of the 8 sign patterns only +++ and --- reach |mean| >= 1
    p, exact = paired_randomization_test([0, 0, 0], [1, 1, 1])
    assert exact
    assert p == pytest.approx(2 / 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_randomization_exact_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(12)
    b = a + rng.normal(0.1, 0.2, 12)
    p, exact = paired_randomization_test(a, b)
    ref = sps.permutation_test(
        (b, a), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=np.inf, alternative="two-sided",
    )
    assert exact
    assert p == pytest.approx(ref.pvalue, abs=1e-9)


def test_randomization_sampled_close_to_scipy_and_never_zero():
    rng = np.random.default_rng(7)
    a = rng.random(200)
    b = a + rng.normal(0.02, 0.2, 200)
    p, exact = paired_randomization_test(a, b, n_resamples=20_000, seed=3)
    ref = sps.ttest_rel(b, a).pvalue  # large n: the permutation and t tests agree closely
    assert not exact
    assert abs(p - ref) < 0.03
    p_far, _ = paired_randomization_test(np.zeros(100), np.ones(100), n_resamples=999)
    assert p_far == pytest.approx(1 / 1000)


def test_identical_runs_have_p_one_and_zero_interval():
    a = np.linspace(0, 1, 40)
    assert paired_randomization_test(a, a)[0] == 1.0
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0)


def test_bootstrap_close_to_scipy_percentile():
    rng = np.random.default_rng(11)
    a = rng.random(80)
    b = a + rng.normal(0.05, 0.1, 80)
    low, high = paired_bootstrap_ci(a, b, n_resamples=20_000, seed=5)
    ref = sps.bootstrap((b - a,), np.mean, method="percentile", n_resamples=20_000,
                        random_state=9).confidence_interval
    assert low < np.mean(b - a) < high
    assert low == pytest.approx(ref.low, abs=0.004)
    assert high == pytest.approx(ref.high, abs=0.004)


def test_bootstrap_is_reproducible_and_narrows_with_lower_confidence():
    a, b = np.arange(50.0), np.arange(50.0) + np.sin(np.arange(50.0))
    assert paired_bootstrap_ci(a, b, seed=1) == paired_bootstrap_ci(a, b, seed=1)
    lo95, hi95 = paired_bootstrap_ci(a, b, confidence=0.95)
    lo50, hi50 = paired_bootstrap_ci(a, b, confidence=0.5)
    assert hi50 - lo50 < hi95 - lo95


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([1, 2], [1], {}, "equal length"),
        ([], [], {}, "empty"),
        ([1, float("nan")], [1, 2], {}, "NaN"),
        ([1, 2], [1, 2], {"confidence": 95}, "confidence=95"),
    ],
)
def test_bad_samples_are_named(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_ci(a, b, **kwargs)


def test_compare_paired_matches_by_query_id_and_notes_small_samples():
    a = {f"q{i}": 0.2 for i in range(10)}
    b = {f"q{i}": 0.2 + 0.1 * (i % 2) for i in reversed(range(10))}
    result = compare_paired(a, b, metric="ndcg@10")
    assert result.n == 10
    assert result.mean_diff == pytest.approx(0.05)
    assert result.mean_b - result.mean_a == pytest.approx(0.05)
    assert "too few" in result.note and str(MIN_QUERIES) in result.note
    assert not result.significant  # never claimed with a note
    assert "ndcg@10" in result.summary() and "too few" in result.summary()


def test_compare_paired_large_clear_difference_is_significant():
    rng = np.random.default_rng(0)
    base = rng.random(100)
    a = {f"q{i}": float(v) for i, v in enumerate(base)}
    b = {f"q{i}": float(v) + 0.1 + 0.01 * rng.standard_normal() for i, v in enumerate(base)}
    result = compare_paired(a, b, metric="recall@100")
    assert result.note == ""
    assert result.significant
    assert result.ci_low > 0.05 and result.p_value < 0.001


def test_compare_paired_refuses_different_query_sets():
    with pytest.raises(ValueError, match="same queries.*only in A.*'q2'"):
        compare_paired({"q1": 1.0, "q2": 1.0}, {"q1": 1.0, "q3": 0.0})


def test_pareto_frontier_mixed_directions():
    points = {
        "cheap": {"ndcg": 0.30, "cost": 0.0, "latency": 0.01},
        "good": {"ndcg": 0.50, "cost": 0.002, "latency": 0.05},
        "worse_than_good": {"ndcg": 0.45, "cost": 0.003, "latency": 0.06},
        "twin_of_cheap": {"ndcg": 0.30, "cost": 0.0, "latency": 0.01},
        "slow_but_best": {"ndcg": 0.55, "cost": 0.002, "latency": 1.0},
    }
    front = pareto_frontier(points, {"ndcg": "max", "cost": "min", "latency": "min"})
    assert front == ("cheap", "good", "twin_of_cheap", "slow_but_best")
    assert pareto_frontier(points, {"ndcg": "max"}) == ("slow_but_best",)
    assert pareto_frontier({}, {"ndcg": "max"}) == ()


def test_pareto_frontier_bad_input():
    with pytest.raises(ValueError, match="direction 'up'"):
        pareto_frontier({"a": {"x": 1.0}}, {"x": "up"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="lacks objective.*'y'"):
        pareto_frontier({"a": {"x": 1.0}}, {"x": "max", "y": "min"})
    with pytest.raises(ValueError, match="at least one objective"):
        pareto_frontier({"a": {"x": 1.0}}, {})
