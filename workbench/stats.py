"""Honest comparisons between runs: paired bootstrap intervals, randomisation tests, Pareto fronts.

Everything here is a pure function of per-query numbers; nothing reads the store. Two runs are
compared query by query (a paired design), which removes the large between-query variance that
an unpaired comparison of two means would have to fight.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "MIN_QUERIES",
    "PairedComparison",
    "paired_bootstrap_ci",
    "paired_randomization_test",
    "compare_paired",
    "pareto_frontier",
]

# Below this many paired queries a bootstrap interval is itself unreliable (its coverage falls
# short of the nominal 95%), so results carry a note rather than a verdict.
MIN_QUERIES = 30
# Exact sign-flip enumeration costs 2**n permutations; beyond this, sample them.
_EXACT_MAX_N = 16


@dataclass(frozen=True, kw_only=True)
class PairedComparison:
    """Run B minus run A on one metric, over the queries both answered.

    `ci_low`/`ci_high` bound the mean difference (bootstrap percentile interval at
    `confidence`); `p_value` is the two-sided paired randomisation test of "no difference";
    `note` is non-empty when the verdict should not be trusted (too few queries).
    """

    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    exact: bool
    note: str

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero and there are enough queries to say so."""
        return not self.note and (self.ci_low > 0 or self.ci_high < 0)

    def summary(self) -> str:
        """One line: the difference, its interval, the p-value, and the note if any."""
        pct = round(self.confidence * 100)
        line = (
            f"{self.metric}: {self.mean_b:.4f} vs {self.mean_a:.4f}, diff {self.mean_diff:+.4f} "
            f"[{pct}% CI {self.ci_low:+.4f}, {self.ci_high:+.4f}], p={self.p_value:.4f}, n={self.n}"
        )
        return f"{line} ({self.note})" if self.note else line


def _diffs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"paired samples must be two 1-D sequences of equal length, got {len(x)} and {len(y)}"
        )
    if x.size == 0:
        raise ValueError("paired samples are empty; compare runs that share at least one query")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired samples contain NaN or infinity; drop or fix those queries first")
    return y - x


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(b - a), resampling queries with replacement.

    Args:
        a: per-query values of the baseline.
        b: per-query values of the candidate, in the same query order.
        confidence: coverage of the interval, in (0, 1).
        n_resamples: bootstrap resamples.
        seed: seed of the resampling, so the interval is reproducible.

    Returns:
        (low, high) bounds of the mean difference.

    Raises:
        ValueError: unequal or empty samples, non-finite values, or a bad `confidence`.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie in (0, 1), e.g. 0.95")
    if n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples} must be positive")
    d = _diffs(a, b)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    # Chunked so memory stays ~8 MB whatever the number of queries.
    step = max(1, 1_000_000 // d.size)
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_randomization_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, bool]:
    """Two-sided p-value of "a and b do not differ", by flipping the sign of paired differences.

    Under the null hypothesis each query's two values are exchangeable, so every sign pattern
    of the differences is equally likely. With at most 16 queries all 2**n patterns are
    enumerated (an exact test); otherwise `n_resamples` random patterns are drawn and the
    p-value is (hits + 1) / (n_resamples + 1), which is never 0.

    Args:
        a: per-query values of the baseline.
        b: per-query values of the candidate, in the same query order.
        n_resamples: random sign patterns when the test is not exact.
        seed: seed of the random patterns.

    Returns:
        (p_value, exact): the p-value and whether it came from full enumeration.

    Raises:
        ValueError: unequal or empty samples, or non-finite values.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples} must be positive")
    d = _diffs(a, b)
    observed = abs(d.mean())
    # A tolerance so that floating-point noise in equal means still counts as "as extreme".
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if d.size <= _EXACT_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        stats = np.abs(signs @ d) / d.size
        return float(np.mean(stats >= observed - tol)), True
    rng = np.random.default_rng(seed)
    hits = 0
    step = max(1, 1_000_000 // d.size)
    for start in range(0, n_resamples, step):
        rows = min(step, n_resamples - start)
        signs = rng.choice((-1.0, 1.0), size=(rows, d.size))
        hits += int(np.count_nonzero(np.abs(signs @ d) / d.size >= observed - tol))
    return (hits + 1) / (n_resamples + 1), False


def compare_paired(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    metric: str = "",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Compare two runs' per-query values of one metric, matched by query id.

    Args:
        a: query id -> value for the baseline run.
        b: query id -> value for the candidate run.
        metric: the metric's name, carried into the result.
        confidence: coverage of the bootstrap interval.
        n_resamples: resamples for the bootstrap and (when not exact) the randomisation test.
        seed: seed of both resampling procedures.

    Returns:
        A `PairedComparison` of b minus a.

    Raises:
        ValueError: the runs do not cover the same queries, or the values are not finite.
    """
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    if only_a or only_b:
        raise ValueError(
            f"the runs were not evaluated on the same queries ({len(only_a)} only in A, e.g. "
            f"{only_a[:3]}; {len(only_b)} only in B, e.g. {only_b[:3]}); compare runs of the "
            "same dataset"
        )
    qids = sorted(a)
    xa = [a[q] for q in qids]
    xb = [b[q] for q in qids]
    low, high = paired_bootstrap_ci(xa, xb, confidence=confidence, n_resamples=n_resamples, seed=seed)
    p_value, exact = paired_randomization_test(xa, xb, n_resamples=n_resamples, seed=seed)
    n = len(qids)
    note = ""
    if n < MIN_QUERIES:
        note = (
            f"only {n} paired queries (< {MIN_QUERIES}): too few to tell the runs apart "
            "reliably; evaluate on more queries"
        )
    mean_a, mean_b = float(np.mean(xa)), float(np.mean(xb))
    return PairedComparison(
        metric=metric,
        n=n,
        mean_a=mean_a,
        mean_b=mean_b,
        mean_diff=float(np.mean(np.subtract(xb, xa))),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        p_value=p_value,
        exact=exact,
        note=note,
    )


def pareto_frontier(
    points: Mapping[str, Mapping[str, float]],
    objectives: Mapping[str, Literal["max", "min"]],
) -> tuple[str, ...]:
    """The ids of the points no other point dominates on `objectives`.

    A point dominates another when it is at least as good on every objective and strictly
    better on one. Points with identical values on every objective are all kept.

    Args:
        points: id -> {objective name: value}, e.g. {"run1": {"ndcg@10": 0.4, "latency_s": 0.02}}.
        objectives: objective name -> "max" (higher is better) or "min" (lower is better).

    Returns:
        Ids on the frontier, in the order of `points`.

    Raises:
        ValueError: no objectives, a direction other than "max"/"min", or a point missing an
            objective or holding a NaN.
    """
    if not objectives:
        raise ValueError("pareto_frontier needs at least one objective, e.g. {'ndcg@10': 'max'}")
    for name, direction in objectives.items():
        if direction not in ("max", "min"):
            raise ValueError(f"objective {name!r} has direction {direction!r}; use 'max' or 'min'")
    ids = list(points)
    if not ids:
        return ()
    rows = []
    for pid in ids:
        missing = [name for name in objectives if name not in points[pid]]
        if missing:
            raise ValueError(f"point {pid!r} lacks objective(s) {missing}; known: {sorted(points[pid])}")
        row = []
        for name, direction in objectives.items():
            value = float(points[pid][name])
            if math.isnan(value):
                raise ValueError(f"point {pid!r} has NaN for {name!r}; drop it or fill the value")
            row.append(value if direction == "max" else -value)  # everything maximised below
        rows.append(row)
    m = np.asarray(rows)
    ge = (m[:, None, :] >= m[None, :, :]).all(axis=2)  # ge[i, j]: i at least as good as j
    gt = (m[:, None, :] > m[None, :, :]).any(axis=2)
    dominated = (ge & gt).any(axis=0)
    return tuple(pid for pid, dom in zip(ids, dominated) if not dom)
