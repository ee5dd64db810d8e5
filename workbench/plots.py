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
    "trace_timeline_figure",
    "trace_percentiles_figure",
    "chunk_size_figure",
    "chunk_cost_figure",
    "rerank_depth_figure",
    "context_tradeoff_figure",
    "rerank_scatter_figure",
    "fusion_weight_figure",
    "filter_effect_figure",
    "routing_curve_figure",
    "cost_waterfall_figure",
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


# --- studies (workbench.studies) ------------------------------------------------------------------
# Figures for the notebooks, each built from one study result; small on purpose (few points, no
# per-point text beyond labels) so that notebook outputs stay small.


if TYPE_CHECKING:
    from .studies import ChunkSizeStudy, ContextTradeoff, FilterStudy, RerankStudy, RetrievalStudy, RoutingStudy


def chunk_size_figure(study: ChunkSizeStudy, metric: str) -> go.Figure:
    """`metric` against chunk size, one line per chunker (and overlap), sizes on a log-2 axis.

    Raises:
        ValueError: no point of the study reports `metric`.
    """
    import plotly.graph_objects as go

    known = sorted({m for p in study.points for m in p.metrics})
    if metric not in known:
        raise ValueError(f"no setting of the study reports {metric!r}; known metrics: {known}")
    fig = go.Figure()
    lines = list(dict.fromkeys((p.method, p.overlap) for p in study.points))
    for i, (method, overlap) in enumerate(lines):
        points = sorted((p for p in study.points if (p.method, p.overlap) == (method, overlap)), key=lambda p: p.size)
        name = method + (f" (overlap {overlap})" if overlap else "")
        fig.add_scatter(x=[p.size for p in points], y=[round(p.metrics.get(metric, 0.0), 4) for p in points],
                        mode="lines+markers", name=name, line={"color": _COLOURS[i % len(_COLOURS)],
                                                               "dash": "dot" if overlap else "solid"},
                        hovertemplate=f"{name}<br>size %{{x}}<br>{metric}: %{{y:.3f}}<extra></extra>")
    sizes = sorted({p.size for p in study.points})
    fig.update_xaxes(type="log", tickvals=sizes, ticktext=[str(s) for s in sizes], title_text="chunk size (tokens)")
    fig.update_layout(title=f"{metric} by chunk size ({study.dataset}, {study.retrieval} retrieval)",
                      yaxis_title=metric, margin={"t": 60, "b": 40})
    return fig


def chunk_cost_figure(study: ChunkSizeStudy, metric: str) -> go.Figure:
    """`metric` against cost per 1,000 queries for each chunker setting, with the Pareto frontier."""
    return quality_cost_figure({p.label: round(p.metrics.get(metric, 0.0), 4) for p in study.points},
                               {p.label: round(p.usd_per_1k, 4) for p in study.points}, metric=metric)


def context_tradeoff_figure(tradeoff: ContextTradeoff) -> go.Figure:
    """Recall of the chunks sent against cost per 1,000 queries: more chunks, or reranked ones."""
    return quality_cost_figure({o.label: round(o.recall, 4) for o in tradeoff.options},
                               {o.label: round(o.usd_per_1k, 4) for o in tradeoff.options},
                               metric=f"recall of the chunks sent ({tradeoff.unit}s)")


def rerank_depth_figure(study: RerankStudy) -> go.Figure:
    """nDCG@k and precision@k after each reranker, by candidate depth N, against the first stage."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"nDCG@{study.k}", f"precision@{study.k}"])
    depths = list(study.depths)
    for col, name in enumerate(("ndcg", "precision"), 1):
        first = study.evaluations[0].summaries[0] if study.evaluations else None
        if first is not None:
            before = round(getattr(first, f"{name}_before"), 4)
            fig.add_trace(go.Scatter(x=depths, y=[before] * len(depths), mode="lines", name="no reranker",
                                     legendgroup="none", showlegend=col == 1, line={"dash": "dash", "color": "#888"},
                                     hovertemplate=f"first stage: %{{y:.3f}}<extra></extra>"), row=1, col=col)
        for i, evaluation in enumerate(study.evaluations):
            values = [round(getattr(s, f"{name}_after"), 4) for s in evaluation.summaries]
            fig.add_trace(go.Scatter(x=[s.depth for s in evaluation.summaries], y=values, mode="lines+markers",
                                     name=evaluation.name, legendgroup=evaluation.name, showlegend=col == 1,
                                     line={"color": _COLOURS[i % len(_COLOURS)]},
                                     hovertemplate=f"{evaluation.name}<br>N=%{{x}}: %{{y:.3f}}<extra></extra>"),
                          row=1, col=col)
    fig.update_xaxes(type="log", tickvals=depths, ticktext=[str(d) for d in depths], title_text="candidates N")
    fig.update_layout(title=f"Reranking the top N to {study.k} ({study.dataset}, judged per {study.unit})",
                      margin={"t": 80, "b": 40})
    return fig


def rerank_scatter_figure(study: RerankStudy, depth: int) -> go.Figure:
    """Per query: nDCG@k before (x) and after (y) each reranker at depth N; above the diagonal it helps.

    Queries with equal values are drawn once, sized by how many share them.

    Raises:
        ValueError: a depth the study did not evaluate.
    """
    import plotly.graph_objects as go

    if depth not in study.depths:
        raise ValueError(f"depth={depth} was not studied; choose one of {list(study.depths)}")
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "#888"}, name="no change",
                    hoverinfo="skip")
    for i, evaluation in enumerate(study.evaluations):
        counts: dict[tuple[float, float], int] = {}
        for r in evaluation.rows:
            if r.depth == depth:
                key = (round(r.ndcg_before, 3), round(r.ndcg_after, 3))
                counts[key] = counts.get(key, 0) + 1
        helps = sum(n for (b, a), n in counts.items() if a > b)
        hurts = sum(n for (b, a), n in counts.items() if a < b)
        fig.add_scatter(x=[b for b, _ in counts], y=[a for _, a in counts], mode="markers",
                        name=f"{evaluation.name} (helps {helps}, hurts {hurts})",
                        marker={"size": [6 + 2 * n ** 0.5 for n in counts.values()], "opacity": 0.6,
                                "color": _COLOURS[i % len(_COLOURS)]},
                        customdata=list(counts.values()),
                        hovertemplate="before %{x:.3f} → after %{y:.3f}<br>%{customdata} queries<extra></extra>")
    fig.update_layout(title=f"Per query: nDCG@{study.k} before and after reranking the top {depth}",
                      xaxis_title="first stage", yaxis_title="reranked", margin={"t": 60, "b": 40})
    return fig


def fusion_weight_figure(study: RetrievalStudy, metric: str) -> go.Figure:
    """`metric` of weighted hybrid fusion by dense weight, with BM25, dense and RRF as reference lines.

    Raises:
        ValueError: the study has no weighted-fusion points.
    """
    import plotly.graph_objects as go

    weighted = sorted((p for p in study.points if p.dense_weight is not None), key=lambda p: p.dense_weight)
    if not weighted:
        raise ValueError("the study has no weighted-fusion points; run retrieval_study with dense_weights")
    fig = go.Figure()
    fig.add_scatter(x=[p.dense_weight for p in weighted], y=[round(p.metrics.get(metric, 0.0), 4) for p in weighted],
                    mode="lines+markers", name="hybrid, weighted fusion", line={"color": _COLOURS[0]},
                    hovertemplate=f"dense weight %{{x}}<br>{metric}: %{{y:.3f}}<extra></extra>")
    others = [p for p in study.points if p.dense_weight is None]
    for i, p in enumerate(others, 1):
        value = round(p.metrics.get(metric, 0.0), 4)
        fig.add_scatter(x=[0, 1], y=[value, value], mode="lines", name=f"{p.label} ({value:.3f})",
                        line={"dash": "dash", "color": _COLOURS[i % len(_COLOURS)]}, hoverinfo="skip")
    fig.update_layout(title=f"{metric}: BM25, dense and hybrid fusion ({study.dataset})",
                      xaxis_title="dense weight (BM25 gets 1 - w)", yaxis_title=metric, margin={"t": 60, "b": 40})
    return fig


def filter_effect_figure(study: FilterStudy, metric: str) -> go.Figure:
    """`metric` and median latency per retriever with the metadata filter off and on."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    frame = study.to_frame()
    fig = make_subplots(rows=1, cols=2, subplot_titles=[metric, "median latency per query (ms)"])
    for i, state in enumerate(("off", "on")):
        rows = frame[frame["filter"] == state]
        for col, column in enumerate((metric, "p50_ms"), 1):
            fig.add_trace(go.Bar(x=list(rows["retriever"]), y=[round(float(v), 4) for v in rows[column]],
                                 name=f"filter {state}", legendgroup=state, showlegend=col == 1,
                                 marker_color=_COLOURS[i]), row=1, col=col)
    fig.update_layout(barmode="group", title=f"What a metadata filter on {study.field!r} does ({study.dataset})",
                      margin={"t": 80, "b": 40})
    return fig


def routing_curve_figure(study: RoutingStudy) -> go.Figure:
    """Each router's cost-quality curve (cost share of always-the-strongest vs quality retained),
    with random routing at the same cost as the baseline."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, curve) in enumerate(study.curves.items()):
        points = sorted(curve.points, key=lambda p: (p.cost_share, p.quality_retained))
        fig.add_scatter(x=[round(p.cost_share, 4) for p in points], y=[round(p.quality_retained, 4) for p in points],
                        mode="lines+markers", name=name, line={"color": _COLOURS[i % len(_COLOURS)]},
                        marker={"size": 5}, customdata=[round(p.threshold or 0.0, 3) for p in points],
                        hovertemplate=f"{name}, threshold %{{customdata}}<br>cost %{{x:.1%}} · quality "
                                      "%{y:.1%}<extra></extra>")
    # Random routing mixes always-the-cheapest and always-the-strongest: a straight line between them.
    cheap = min((p for c in study.curves.values() for p in c.points), key=lambda p: p.cost_share)
    cheap_q = cheap.cheapest_quality / cheap.strongest_quality
    fig.add_scatter(x=[round(cheap.cost_share, 4), 1.0], y=[round(cheap_q, 4), 1.0], mode="lines",
                    name="random routing",
                    line={"dash": "dash", "color": "#888"}, hoverinfo="skip")
    fig.update_layout(title=f"Routing: cost against quality ({study.test} held-out queries)",
                      xaxis_title="cost, share of always-the-strongest", yaxis_title="quality retained",
                      xaxis_tickformat=".0%", yaxis_tickformat=".0%", margin={"t": 60, "b": 40})
    return fig


def cost_waterfall_figure(breakdown: CostBreakdown) -> go.Figure:
    """From the naive cost, each lever's saving in turn (routing, prompt caching, batching,
    response cache), down to the cost with every lever on."""
    import plotly.graph_objects as go

    unit = "month" if breakdown.unit == "month" else "query"
    labels = ["naive", *[lever.replace("_", " ") for lever in breakdown.savings], "with every lever"]
    values = [breakdown.naive_total, *[-s for s in breakdown.savings.values()], breakdown.total]
    fig = go.Figure(go.Waterfall(
        x=labels, y=[round(v, 2) for v in values], measure=["absolute", *["relative"] * len(breakdown.savings), "total"],
        text=[f"-${-v:,.0f}" if v < 0 else f"${v:,.0f}" for v in values], textposition="outside",
        decreasing={"marker": {"color": _COLOURS[2]}}, increasing={"marker": {"color": _COLOURS[4]}},
        totals={"marker": {"color": _COLOURS[0]}}, connector={"line": {"color": "#888"}},
    ))
    fig.update_layout(title=f"Cost per {unit}, lever by lever", yaxis_title=f"USD per {unit}",
                      showlegend=False, margin={"t": 60, "b": 40})
    return fig
