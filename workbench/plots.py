"""What the app and notebooks show, built from results: Plotly figures and the tables behind them.

Pure functions of experiment results and cost breakdowns; no Streamlit here, so every figure
can be checked in a test or a notebook. Configurations are keyed by a display label, and every
function keeps the order of its input mapping (the first entry is the baseline).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .stats import compare_paired, paired_bootstrap_ci, pareto_frontier

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from .costs import CostBreakdown
    from .datasets import Dataset
    from .experiment import ExperimentResult, QueryRow
    from .types import Chunk

__all__ = [
    "COST_COMPONENTS",
    "PERCENTILES",
    "primary_metric",
    "metric_summary",
    "summary_display",
    "cost_per_1k_figure",
    "monthly_cost_figure",
    "quality_cost_figure",
    "latency_percentiles",
    "latency_figure",
    "highlight_html",
    "hit_frame",
    "relevant_frame",
]

COST_COMPONENTS = {
    "uncached_input": "Uncached input",
    "cache_write": "Cache writes",
    "cache_read": "Cache reads",
    "output": "Output",
}
PERCENTILES = (50, 95, 99)
_COLOURS = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2")
_COMPONENT_COLOURS = ("#4C78A8", "#F58518", "#72B7B2", "#54A24B")
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


def _stacked_costs(breakdowns: Mapping[str, CostBreakdown], scale: float, title: str, unit: str) -> go.Figure:
    import plotly.graph_objects as go

    labels = list(breakdowns)
    fig = go.Figure()
    for (field, name), colour in zip(COST_COMPONENTS.items(), _COMPONENT_COLOURS):
        values = [getattr(breakdowns[label], field) * scale for label in labels]
        fig.add_bar(name=name, x=labels, y=values, marker_color=colour,
                    hovertemplate="%{x}<br>" + name + ": $%{y:.4f}<extra></extra>")
    totals = [breakdowns[label].total * scale for label in labels]
    fig.add_scatter(x=labels, y=totals, mode="text", text=[f"${t:,.2f}" for t in totals],
                    textposition="top center", showlegend=False, hoverinfo="skip", name="total")
    fig.update_layout(barmode="stack", title=title, yaxis_title=f"USD {unit}", legend_title="component",
                      margin={"t": 60, "b": 40})
    return fig


def cost_per_1k_figure(per_query: Mapping[str, CostBreakdown]) -> go.Figure:
    """Cost per 1,000 queries per configuration, stacked by component (uncached input, cache
    writes, cache reads, output).

    Args:
        per_query: label -> `costs.cost_per_query` breakdown.
    """
    for label, b in per_query.items():
        if b.unit != "query":
            raise ValueError(f"{label!r}: give per-query breakdowns (costs.cost_per_query), not per-{b.unit}")
    return _stacked_costs(per_query, 1000.0, "Cost per 1,000 queries", "per 1,000 queries")


def monthly_cost_figure(monthly: Mapping[str, CostBreakdown]) -> go.Figure:
    """Monthly cost per configuration for a workload, stacked by component.

    Args:
        monthly: label -> `costs.monthly_cost` breakdown.
    """
    for label, b in monthly.items():
        if b.unit != "month":
            raise ValueError(f"{label!r}: give monthly breakdowns (costs.monthly_cost), not per-{b.unit}")
    queries = {b.queries for b in monthly.values()}
    subtitle = f" ({next(iter(queries)):,.0f} queries)" if len(queries) == 1 else ""
    return _stacked_costs(monthly, 1.0, f"Monthly cost{subtitle}", "per month")


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
                        marker={"size": 14, "color": _COLOURS[i % len(_COLOURS)],
                                "symbol": "circle" if k in frontier else "circle-open"},
                        name=k + (" (frontier)" if k in frontier else ""),
                        hovertemplate=f"{k}<br>{metric}: %{{y:.3f}}<br>$%{{x:.4f}} per 1k<extra></extra>")
    fig.update_layout(title=f"{metric} against cost", xaxis_title="USD per 1,000 queries", yaxis_title=metric,
                      margin={"t": 60, "b": 40})
    return fig


def latency_percentiles(results: Mapping[str, ExperimentResult]) -> pd.DataFrame:
    """P50/P95/P99 per-query latency per configuration and stage, in milliseconds.

    Returns:
        Columns config, stage, p50, p95, p99, n; stages are those the rows timed
        (retrieve, rerank) plus "total".
    """
    import pandas as pd

    rows = []
    for label, result in results.items():
        stages = list(dict.fromkeys(s for r in result.rows for s in r.stage_latency_s)) + ["total"]
        for stage in stages:
            values = [1000 * (r.latency_s if stage == "total" else r.stage_latency_s[stage])
                      for r in result.rows if stage == "total" or stage in r.stage_latency_s]
            if values:
                p = np.percentile(values, PERCENTILES)
                rows.append({"config": label, "stage": stage, **{f"p{q}": float(v) for q, v in zip(PERCENTILES, p)},
                             "n": len(values)})
    return pd.DataFrame(rows, columns=["config", "stage", *[f"p{q}" for q in PERCENTILES], "n"])


def latency_figure(table: pd.DataFrame) -> go.Figure:
    """Latency percentiles from `latency_percentiles`: one panel per stage, bars per config.

    Raises:
        ValueError: the table is empty.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if table.empty:
        raise ValueError("no latencies to plot; run at least one query")
    stages = list(dict.fromkeys(table["stage"]))
    configs = list(dict.fromkeys(table["config"]))
    fig = make_subplots(rows=1, cols=len(stages), subplot_titles=stages, shared_yaxes=False)
    names = [f"P{q}" for q in PERCENTILES]
    for i, config in enumerate(configs):
        for j, stage in enumerate(stages, 1):
            row = table[(table["config"] == config) & (table["stage"] == stage)]
            if row.empty:
                continue
            values = [float(row.iloc[0][f"p{q}"]) for q in PERCENTILES]
            fig.add_trace(go.Bar(x=names, y=values, name=config, legendgroup=config, showlegend=j == 1,
                                 marker_color=_COLOURS[i % len(_COLOURS)],
                                 hovertemplate=f"{config} · {stage}<br>%{{x}}: %{{y:.2f}} ms<extra></extra>"),
                          row=1, col=j)
    fig.update_layout(barmode="group", title="Latency per query by stage (ms)", margin={"t": 80, "b": 40})
    fig.update_yaxes(title_text="ms", col=1)
    return fig


def highlight_html(text: str, offset: int, spans: Sequence[tuple[int, int]]) -> str:
    """`text` (which starts at character `offset` of its document) as HTML, with `spans` marked.

    Args:
        text: a chunk's text.
        offset: where the chunk starts in its document.
        spans: (start, end) character ranges in the same document; parts outside the chunk
            are ignored, overlapping ones merged.

    Returns:
        Escaped text with each covered part wrapped in <mark>.
    """
    cuts = sorted((max(s, offset) - offset, min(e, offset + len(text)) - offset) for s, e in spans
                  if s < offset + len(text) and e > offset)
    merged: list[list[int]] = []
    for s, e in cuts:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    parts, pos = [], 0
    for s, e in merged:
        parts.append(html.escape(text[pos:s]))
        parts.append(f"<mark>{html.escape(text[s:e])}</mark>")
        pos = e
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


def hit_frame(row: QueryRow, chunks: Mapping[str, Chunk], dataset: Dataset, *, k: int = 5) -> pd.DataFrame:
    """The top `k` hits of one query, for the drill-down.

    Returns:
        Columns rank, score, doc_id, grade (the document's relevance, 0 if unjudged),
        reference_chars (characters of reference spans inside the chunk), chunk_id, html
        (the chunk's text with reference spans marked).

    Raises:
        KeyError: a chunk id of the row is not in `chunks` (the chunks of another config).
    """
    import pandas as pd

    relevance = dataset.qrels.get(row.query_id, {})
    spans = dataset.spans.get(row.query_id, ())
    records = []
    for rank, (chunk_id, score) in enumerate(zip(row.chunk_ids[:k], row.scores[:k]), 1):
        chunk = chunks[chunk_id]
        mine = [(s.start, s.end) for s in spans if s.doc_id == chunk.doc_id]
        covered = sum(max(0, min(e, chunk.end) - max(s, chunk.start)) for s, e in mine)
        records.append({
            "rank": rank, "score": score, "doc_id": chunk.doc_id, "grade": relevance.get(chunk.doc_id, 0),
            "reference_chars": covered, "chunk_id": chunk_id,
            "html": highlight_html(chunk.text, chunk.start, mine),
        })
    return pd.DataFrame(records, columns=["rank", "score", "doc_id", "grade", "reference_chars", "chunk_id", "html"])


def relevant_frame(row: QueryRow, dataset: Dataset) -> pd.DataFrame:
    """Each relevant document of a query, its grade, and the rank it was found at (NaN: missed).

    Ranks count documents, each at its best chunk, over everything the config retrieved.
    """
    import pandas as pd

    ranks = {doc: i for i, doc in enumerate(row.retrieved, 1)}
    relevant = sorted(((d, g) for d, g in dataset.qrels.get(row.query_id, {}).items() if g > 0),
                      key=lambda dg: (-dg[1], dg[0]))
    return pd.DataFrame(
        [{"doc_id": d, "grade": g, "rank": ranks.get(d, float("nan")), "found": d in ranks} for d, g in relevant],
        columns=["doc_id", "grade", "rank", "found"],
    )


# --- traces (workbench.tracing) -------------------------------------------------------------------
# Figures for the trace view (pages/1_Traces.py), built from `TraceStore` records and frames.

__all__ += ["trace_timeline_figure", "trace_percentiles_figure"]

if TYPE_CHECKING:
    from .tracing import SpanRecord


def trace_timeline_figure(spans: Sequence[SpanRecord]) -> go.Figure:
    """One request's spans as a timeline: a bar per span from its start to its end (ms).

    Args:
        spans: the spans of one trace (`TraceStore.spans`), parents before children.

    Raises:
        ValueError: no spans.
    """
    import plotly.graph_objects as go

    if not spans:
        raise ValueError("no spans to draw; pick a trace that has finished exporting (tracing.flush())")
    depth: dict[str, int] = {}
    for s in spans:  # a span's parent comes before it, so its depth is known
        depth[s.span_id] = depth.get(s.parent_id, -1) + 1 if s.parent_id else 0
    labels = [f"{'· ' * depth[s.span_id]}{s.name}" for s in spans]
    fig = go.Figure(go.Bar(
        y=labels,
        x=[1e3 * s.duration_s for s in spans],
        base=[1e3 * s.start_s for s in spans],
        orientation="h",
        marker_color=["#E45756" if s.status == "error" else _COLOURS[min(depth[s.span_id], 2)] for s in spans],
        text=[f"{1e3 * s.duration_s:.1f} ms" for s in spans],
        textposition="auto",
        customdata=[s.error or "ok" for s in spans],
        hovertemplate="%{y}<br>start %{base:.2f} ms · %{x:.2f} ms<br>%{customdata}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Spans (ms from the start of the request)", xaxis_title="ms", showlegend=False,
                      height=120 + 40 * len(spans), margin={"t": 60, "b": 40})
    return fig


def trace_percentiles_figure(table: pd.DataFrame) -> go.Figure:
    """Latency P50/P95/P99 over time, one panel per stage, from `tracing.percentiles_over_time`.

    Raises:
        ValueError: the table is empty.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if table.empty:
        raise ValueError("no traces in this window; widen the filters or answer some questions")
    order = {"request": 0, "route": 1, "retrieve": 2, "rerank": 3, "generate": 4}
    stages = sorted(dict.fromkeys(table["stage"]), key=lambda s: (order.get(s, 9), s))
    fig = make_subplots(rows=1, cols=len(stages), subplot_titles=stages, shared_xaxes=False)
    for j, stage in enumerate(stages, 1):
        rows = table[table["stage"] == stage].sort_values("bucket")
        for i, q in enumerate(PERCENTILES):
            fig.add_trace(go.Scatter(
                x=rows["bucket"], y=rows[f"p{q}_ms"], mode="lines+markers", name=f"P{q}", legendgroup=f"P{q}",
                showlegend=j == 1, line={"color": _COLOURS[i]}, customdata=rows["count"],
                hovertemplate=f"{stage} P{q}: %{{y:.2f}} ms<br>%{{x}} · %{{customdata}} requests<extra></extra>",
            ), row=1, col=j)
    fig.update_layout(title="Latency percentiles over time (ms)", margin={"t": 80, "b": 40})
    fig.update_yaxes(title_text="ms", col=1)
    return fig
