"""Router evaluation: tier quality and cost, confusion against labels, and the cost-quality sweep."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..prices import load_prices
from ..tokens import estimate_tokens
from ..types import Answer
from .base import RoutingError, check_models, choose_tiers

if TYPE_CHECKING:
    import pandas as pd

    from ..prices import ModelPrice

__all__ = [
    "tier_quality",
    "adequate_tiers",
    "measure_tier_quality",
    "tier_costs",
    "cascade_tiers",
    "RoutingEvaluation",
    "evaluate_routing",
    "CostQualityCurve",
    "sweep_thresholds",
]


def tier_quality(labels: Sequence[int], n_tiers: int, *, below: float = 0.5) -> np.ndarray:
    """Per-query quality of each tier, from labels of the cheapest adequate tier.

    A tier at or above the label scores 1; each tier short of it multiplies by `below`
    (so 0.5, 0.25, ... by default). A stated proxy, not a measurement.

    Returns:
        shape (n, n_tiers).
    """
    if not 0.0 <= below < 1.0:
        raise RoutingError(f"below={below} must lie in [0, 1)")
    labels = np.asarray(labels, dtype=int)
    short = np.clip(labels[:, None] - np.arange(n_tiers)[None, :], 0, None)
    return below**short


def adequate_tiers(quality: np.ndarray, *, tolerance: float = 0.0) -> np.ndarray:
    """The cheapest tier per query whose quality is within `tolerance` of the query's best."""
    quality = np.asarray(quality, dtype=float)
    return (quality >= quality.max(axis=1, keepdims=True) - tolerance - 1e-12).argmax(axis=1)


def measure_tier_quality(
    queries: Sequence[str],
    tiers: Sequence[str],
    answer: Callable[[str, str], Answer],
    score: Callable[[str, Answer], float],
) -> np.ndarray:
    """Run every tier on every query and score the answers (e.g. with an API key set).

    Returns:
        shape (len(queries), len(tiers)): score(query, answer(query, tier)).
    """
    return np.array([[float(score(q, answer(q, t))) for t in tiers] for q in queries]).reshape(
        len(queries), len(tiers)
    )


def tier_costs(
    queries: Sequence[str],
    tiers: Sequence[str],
    *,
    prices: Mapping[str, ModelPrice] | None = None,
    context_tokens: int = 1500,
    output_tokens: int = 300,
    count_tokens: Callable[[str], int] | None = None,
) -> np.ndarray:
    """USD of one call per query and tier: the query plus `context_tokens` in, `output_tokens` out.

    Returns:
        shape (len(queries), len(tiers)).

    Raises:
        RoutingError: a tier is missing from the price table.
    """
    prices = load_prices() if prices is None else prices
    check_models(tiers, prices)
    count = count_tokens or estimate_tokens
    tokens_in = np.array([count(q) + context_tokens for q in queries], dtype=float)
    rate_in = np.array([prices[t].input for t in tiers]) / 1e6
    rate_out = np.array([prices[t].output for t in tiers]) / 1e6
    return tokens_in[:, None] * rate_in[None, :] + output_tokens * rate_out[None, :]


def cascade_tiers(confidence: np.ndarray, threshold: float, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a cascade: try tiers cheapest first, stop at the first confident answer.

    Args:
        confidence: shape (n, tiers); the judge's score of each tier's answer to each query.
        threshold: an answer scoring at least this is kept; below it the cascade escalates.
        cost: shape (n, tiers); USD of one call per query and tier.

    Returns:
        (tier indices, USD spent per query including the escalated-from calls).
    """
    chosen = choose_tiers(confidence, threshold)
    tried = np.arange(cost.shape[1])[None, :] <= chosen[:, None]
    return chosen, (np.asarray(cost) * tried).sum(axis=1)


@dataclass(frozen=True, kw_only=True)
class RoutingEvaluation:
    """A router's choices on a labelled set, against always-the-strongest and random routing.

    `random_*` is RouteLLM's baseline: each query goes to the strongest tier with the
    probability that makes the expected cost equal the router's, else to the cheapest.
    """

    tiers: tuple[str, ...]
    threshold: float | None
    n: int
    accuracy: float
    confusion: tuple[tuple[int, ...], ...]  # rows: label tier, columns: chosen tier
    tier_shares: tuple[float, ...]
    under_routed: float  # share sent below its label (quality lost)
    over_routed: float  # share sent above its label (money wasted)
    cost_usd: float
    strongest_cost_usd: float
    quality: float
    strongest_quality: float
    cheapest_quality: float
    random_quality: float

    @property
    def cost_share(self) -> float:
        """Router cost over always-the-strongest cost."""
        return self.cost_usd / self.strongest_cost_usd

    @property
    def cost_reduction(self) -> float:
        """1 - cost_share."""
        return 1.0 - self.cost_share

    @property
    def quality_retained(self) -> float:
        """Router quality over always-the-strongest quality."""
        return self.quality / self.strongest_quality

    @property
    def random_quality_retained(self) -> float:
        """Random routing's quality at the same cost, over the strongest's."""
        return self.random_quality / self.strongest_quality

    @property
    def gap_recovered(self) -> float:
        """RouteLLM's PGR: share of the cheapest-to-strongest quality gap the router recovers."""
        gap = self.strongest_quality - self.cheapest_quality
        return (self.quality - self.cheapest_quality) / gap if gap else 1.0

    def summary(self) -> str:
        """The headline: X% cost reduction at Y% of top-model quality, with the random baseline."""
        return (
            f"{100 * self.cost_reduction:.1f}% cost reduction at {100 * self.quality_retained:.1f}% of "
            f"top-model quality (random routing at the same cost: {100 * self.random_quality_retained:.1f}%)"
        )

    def to_frame(self) -> pd.DataFrame:
        """One row of the headline numbers."""
        import pandas as pd

        row: dict[str, Any] = {
            "threshold": self.threshold,
            "n": self.n,
            "accuracy": self.accuracy,
            "cost_usd": self.cost_usd,
            "cost_share": self.cost_share,
            "cost_reduction": self.cost_reduction,
            "quality": self.quality,
            "quality_retained": self.quality_retained,
            "gap_recovered": self.gap_recovered,
            "random_quality_retained": self.random_quality_retained,
            "under_routed": self.under_routed,
            "over_routed": self.over_routed,
        }
        row |= {f"share:{t}": s for t, s in zip(self.tiers, self.tier_shares)}
        return pd.DataFrame([row])

    def confusion_frame(self) -> pd.DataFrame:
        """The confusion matrix: rows are label tiers, columns chosen tiers."""
        import pandas as pd

        return pd.DataFrame(
            self.confusion,
            index=pd.Index(self.tiers, name="label"),
            columns=pd.Index(self.tiers, name="chosen"),
        )


def evaluate_routing(
    choices: Sequence[int],
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    tiers: Sequence[str],
    labels: Sequence[int] | None = None,
    spent: Sequence[float] | None = None,
    threshold: float | None = None,
) -> RoutingEvaluation:
    """Score one set of routing choices.

    Args:
        choices: the chosen tier index per query.
        quality: shape (n, tiers); per-query quality of each tier.
        cost: shape (n, tiers); USD of one call per query and tier.
        tiers: the model ids, cheapest first.
        labels: the cheapest adequate tier per query; defaults to `adequate_tiers(quality)`.
        spent: USD actually spent per query (a cascade's discarded calls included); defaults
            to the cost of the chosen tier.
        threshold: recorded with the result.

    Raises:
        RoutingError: shapes that do not match.
    """
    quality, cost = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
    choices = np.asarray(choices, dtype=int)
    n, n_tiers = quality.shape
    if cost.shape != quality.shape or choices.shape != (n,) or len(tiers) != n_tiers or n == 0:
        raise RoutingError(
            f"shapes do not match: choices {choices.shape}, quality {quality.shape}, cost {cost.shape}, "
            f"{len(tiers)} tiers; pass one row per query and one column per tier"
        )
    labels = adequate_tiers(quality) if labels is None else np.asarray(labels, dtype=int)
    rows = np.arange(n)
    total = float(np.sum(spent)) if spent is not None else float(cost[rows, choices].sum())
    cheap_cost, strong_cost = float(cost[:, 0].sum()), float(cost[:, -1].sum())
    cheap_q, strong_q = float(quality[:, 0].mean()), float(quality[:, -1].mean())
    p = float(np.clip((total - cheap_cost) / (strong_cost - cheap_cost), 0, 1)) if strong_cost > cheap_cost else 1.0
    confusion = np.zeros((n_tiers, n_tiers), dtype=int)
    np.add.at(confusion, (labels, choices), 1)
    return RoutingEvaluation(
        tiers=tuple(tiers),
        threshold=threshold,
        n=n,
        accuracy=float(np.mean(choices == labels)),
        confusion=tuple(tuple(int(c) for c in row) for row in confusion),
        tier_shares=tuple(float(s) for s in np.bincount(choices, minlength=n_tiers) / n),
        under_routed=float(np.mean(choices < labels)),
        over_routed=float(np.mean(choices > labels)),
        cost_usd=total,
        strongest_cost_usd=strong_cost,
        quality=float(quality[rows, choices].mean()),
        strongest_quality=strong_q,
        cheapest_quality=cheap_q,
        random_quality=(1 - p) * cheap_q + p * strong_q,
    )


@dataclass(frozen=True, kw_only=True)
class CostQualityCurve:
    """A router evaluated at each threshold of a sweep."""

    points: tuple[RoutingEvaluation, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per threshold."""
        import pandas as pd

        return pd.concat([p.to_frame() for p in self.points], ignore_index=True)

    def operating_point(self, min_quality_retained: float = 0.95) -> RoutingEvaluation:
        """The cheapest point keeping at least `min_quality_retained` of top-model quality.

        Raises:
            RoutingError: no point keeps that much; lower the target or sweep higher thresholds.
        """
        ok = [p for p in self.points if p.quality_retained >= min_quality_retained - 1e-12]
        if not ok:
            best = max(p.quality_retained for p in self.points)
            raise RoutingError(
                f"no threshold keeps {min_quality_retained:.0%} of top-model quality (best: {best:.1%}); "
                "lower the target or include threshold 1.0 in the sweep"
            )
        return min(ok, key=lambda p: (p.cost_usd, -p.quality))


def sweep_thresholds(
    scores: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    tiers: Sequence[str],
    labels: Sequence[int] | None = None,
    thresholds: Sequence[float] | None = None,
    cascade: bool = False,
) -> CostQualityCurve:
    """The cost-quality curve of a router over thresholds.

    Args:
        scores: shape (n, tiers); adequacy estimates (a scoring router's `adequacy`), or with
            `cascade=True` the judge's confidence in each tier's answer.
        quality, cost, tiers, labels: as in `evaluate_routing`.
        thresholds: the thresholds to try; by default 0, 1 and the distinct score values (at
            most 201 of them, by quantile), which traces the whole curve.
        cascade: count the calls a cascade escalates from as spent.
    """
    if thresholds is None:
        distinct = np.unique(np.clip(np.asarray(scores, dtype=float)[:, :-1], 0.0, 1.0))
        if len(distinct) > 199:
            distinct = np.quantile(distinct, np.linspace(0.0, 1.0, 199))
        thresholds = np.unique(np.concatenate([[0.0, 1.0], distinct]))
    points = []
    for threshold in thresholds:
        if cascade:
            choices, spent = cascade_tiers(scores, threshold, cost)
        else:
            choices, spent = choose_tiers(scores, threshold), None
        points.append(
            evaluate_routing(choices, quality, cost, tiers=tiers, labels=labels, spent=spent, threshold=float(threshold))
        )
    return CostQualityCurve(points=tuple(points))
