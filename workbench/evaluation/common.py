"""The rule every study recommends by, and the helpers the studies share (context tokens, prices, latency)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..costs import Workload, cost_per_query
from ..tokens import estimate_tokens

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..datasets import Dataset
    from ..results import ExperimentResult
    from ..types import Chunk

__all__ = ["Recommendation", "recommend"]


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    """The cheapest setting within `share` of the best value of `metric`, and the best itself."""

    label: str
    metric: str
    value: float
    cost: float
    best_label: str
    best_value: float
    best_cost: float
    share: float
    cost_name: str

    def __str__(self) -> str:
        if self.label == self.best_label:
            return (f"{self.label}: the best {self.metric} ({self.value:.3f}) at {self.cost_name} "
                    f"{self.cost:.4g}, and no cheaper setting comes within {self.share:.0%} of it")
        return (f"{self.label}: {self.metric} {self.value:.3f} ({self.value / self.best_value:.1%} of the best, "
                f"{self.best_label} at {self.best_value:.3f}) for {self.cost_name} {self.cost:.4g} instead of "
                f"{self.best_cost:.4g} ({1 - self.cost / self.best_cost:.0%} less)")


def recommend(
    points: Mapping[str, Mapping[str, float]], *, metric: str, cost: str, share: float = 0.95
) -> Recommendation:
    """The cheapest point whose `metric` reaches `share` of the best point's (ties: higher metric).

    Args:
        points: label -> values, each holding `metric` (higher is better) and `cost` (lower is better).
        metric: the quality to keep.
        cost: what to minimise (e.g. "usd_per_1k", "latency_ms").
        share: the fraction of the best quality that is good enough, in (0, 1].

    Returns:
        A `Recommendation`; its `str()` is a one-line explanation.

    Raises:
        ValueError: no points, a point missing `metric` or `cost`, a share outside (0, 1], or a
            best value that is not positive (nothing to keep a share of).
    """
    if not points:
        raise ValueError("recommend needs at least one point")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share={share} must lie in (0, 1]; 0.95 keeps 95% of the best {metric}")
    for label, values in points.items():
        missing = [name for name in (metric, cost) if name not in values]
        if missing:
            raise ValueError(f"point {label!r} lacks {missing}; it has {sorted(values)}")
    best = max(points, key=lambda label: (points[label][metric], -points[label][cost]))
    top = points[best][metric]
    if not top > 0:
        raise ValueError(f"the best {metric} is {top}; nothing to keep a share of, so pick another metric")
    good = [label for label in points if points[label][metric] >= share * top - 1e-12]
    chosen = min(good, key=lambda label: (points[label][cost], -points[label][metric]))
    return Recommendation(
        label=chosen, metric=metric, value=float(points[chosen][metric]), cost=float(points[chosen][cost]),
        best_label=best, best_value=float(top), best_cost=float(points[best][cost]), share=share, cost_name=cost,
    )


# --- helpers the studies share ------------------------------------------------------------


def mean_tokens(chunks: Sequence[Chunk], *, sample: int = 2_000) -> float:
    """Mean Claude-token estimate of the chunks; above `sample` chunks, of an evenly spaced sample."""
    if not chunks:
        return 0.0
    step = max(1, math.ceil(len(chunks) / sample))
    return float(np.mean([estimate_tokens(c.text) for c in chunks[::step]]))


def usd_per_1k(config: PipelineConfig, workload: Workload, *, chunk_tokens: float, k: int) -> float:
    """The cost model's price of 1,000 queries with `k` chunks of `chunk_tokens` tokens in the prompt."""
    shaped = dataclasses.replace(workload, chunk_tokens=round(chunk_tokens), k=k)
    return 1000.0 * cost_per_query(config, shaped).total


def default_workload(dataset: Dataset, query_ids: Sequence[str]) -> Workload:
    """The cost model's defaults, with the query length measured on the dataset's queries."""
    lengths = [estimate_tokens(dataset.queries[q]) for q in query_ids]
    return Workload(query_tokens=round(float(np.mean(lengths))) if lengths else 30)


def percentile_ms(result: ExperimentResult, q: float) -> float:
    """The `q`th percentile of per-query latency, in milliseconds (0 without rows)."""
    return float(np.percentile([1000 * r.latency_s for r in result.rows], q)) if result.rows else 0.0
