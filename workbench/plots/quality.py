"""Quality per configuration: the primary metric, mean and bootstrap CIs with paired tests, quality against cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..stats import compare_paired, paired_bootstrap_ci, pareto_frontier
from .style import COLOURS

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ..results import ExperimentResult

__all__ = ["primary_metric", "metric_summary", "summary_display", "quality_cost_figure"]

_PREFERRED = ("ndcg@", "span_iou@", "recall@", "mrr@")


def primary_metric(results: Mapping[str, ExperimentResult]) -> str:
    """The headline metric the results share: nDCG for judged documents, span IoU for span sets.

    Raises:
        ValueError: no result has any metric (e.g. a dataset without questions).
    """
    names = list(dict.fromkeys(m for r in results.values() for m in r.aggregates))
    for prefix in _PREFERRED:
        for name in names:
            if name.startswith(prefix):
                return name
    if names:
        return names[0]
    raise ValueError("the results hold no metrics; evaluate on a dataset with questions")


def _per_query(result: ExperimentResult, metric: str) -> dict[str, float]:
    return {r.query_id: float(r.metrics.get(metric, 0.0)) for r in result.rows}


def metric_summary(
    results: Mapping[str, ExperimentResult],
    metrics: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> pd.DataFrame:
    """Mean of each metric per configuration with a bootstrap interval, and a paired test vs the first.

    Args:
        results: label -> result; the first is the baseline every other is compared with.
        metrics: which metrics; default every metric of the results, in their order.
        confidence: coverage of the intervals.
        n_resamples: bootstrap and randomisation resamples.

    Returns:
        One row per (config, metric): mean, ci_low, ci_high, diff (vs the baseline), p_value,
        significant (interval of the paired difference excludes 0 with at least
        `stats.MIN_QUERIES` queries), n. Baseline rows have NaN diff and p_value.

    Raises:
        ValueError: no results, or results evaluated on different queries.
    """
    import pandas as pd

    if not results:
        raise ValueError("metric_summary needs at least one result")
    names = list(metrics) if metrics is not None else list(
        dict.fromkeys(m for r in results.values() for m in r.aggregates)
    )
    labels = list(results)
    base = results[labels[0]]
    rows = []
    for label in labels:
        result = results[label]
        for metric in names:
            values = _per_query(result, metric)
            x = [values[q] for q in sorted(values)]
            if not x:
                continue
            low, high = paired_bootstrap_ci(
                [0.0] * len(x), x, confidence=confidence, n_resamples=n_resamples
            )  # the interval of mean(x - 0) is the interval of the mean
            row = {"config": label, "metric": metric, "mean": float(np.mean(x)), "ci_low": low, "ci_high": high,
                   "diff": float("nan"), "p_value": float("nan"), "significant": False, "n": len(x)}
            if label != labels[0]:
                c = compare_paired(_per_query(base, metric), values, metric=metric, confidence=confidence,
                                   n_resamples=n_resamples)
                row.update(diff=c.mean_diff, p_value=c.p_value, significant=c.significant)
            rows.append(row)
    return pd.DataFrame(rows, columns=["config", "metric", "mean", "ci_low", "ci_high", "diff", "p_value",
                                       "significant", "n"])


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """`metric_summary` as a readable table: one row per config, "mean [low, high]" per metric.

    A significant difference against the first config is marked ▲ (better) or ▼ (worse).
    """
    import pandas as pd

    cells: dict[str, dict[str, str]] = {}
    for r in summary.itertuples(index=False):
        mark = ("  ▲" if r.diff > 0 else "  ▼") if r.significant else ""
        cells.setdefault(r.config, {})[r.metric] = f"{r.mean:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]{mark}"
    frame = pd.DataFrame.from_dict(cells, orient="index")
    frame.index.name = "config"
    return frame


def quality_cost_figure(quality: Mapping[str, float], cost: Mapping[str, float], *, metric: str) -> go.Figure:
    """Quality against cost per 1,000 queries, with the Pareto frontier (higher quality, lower cost).

    Args:
        quality: label -> the metric's mean.
        cost: label -> USD per 1,000 queries.
        metric: the metric's name, for the axis.

    Raises:
        ValueError: the two mappings name different configurations.
    """
    import plotly.graph_objects as go

    if set(quality) != set(cost):
        raise ValueError(f"quality and cost name different configs: {sorted(quality)} vs {sorted(cost)}")
    labels = list(quality)
    frontier = set(pareto_frontier({k: {"q": quality[k], "c": cost[k]} for k in labels}, {"q": "max", "c": "min"}))
    fig = go.Figure()
    front = sorted((k for k in labels if k in frontier), key=lambda k: (cost[k], quality[k]))
    fig.add_scatter(x=[cost[k] for k in front], y=[quality[k] for k in front], mode="lines",
                    line={"dash": "dash", "color": "#888"}, name="Pareto frontier", hoverinfo="skip")
    for i, k in enumerate(labels):
        fig.add_scatter(x=[cost[k]], y=[quality[k]], mode="markers+text", text=[k], textposition="top center",
                        marker={"size": 14, "color": COLOURS[i % len(COLOURS)],
                                "symbol": "circle" if k in frontier else "circle-open"},
                        name=k + (" (frontier)" if k in frontier else ""),
                        hovertemplate=f"{k}<br>{metric}: %{{y:.3f}}<br>$%{{x:.4f}} per 1k<extra></extra>")
    fig.update_layout(title=f"{metric} against cost", xaxis_title="USD per 1,000 queries", yaxis_title=metric,
                      margin={"t": 60, "b": 40})
    return fig
