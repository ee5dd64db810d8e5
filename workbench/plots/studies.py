"""Figures for the notebooks, each built from one study result (`workbench.evaluation`).

Small on purpose (few points, no per-point text beyond labels) so that notebook outputs stay small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .quality import quality_cost_figure
from .style import COLOURS

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..evaluation import ChunkSizeStudy, ContextTradeoff, FilterStudy, RerankStudy, RetrievalStudy, RoutingStudy

__all__ = [
    "chunk_size_figure",
    "chunk_cost_figure",
    "rerank_depth_figure",
    "context_tradeoff_figure",
    "rerank_scatter_figure",
    "fusion_weight_figure",
    "filter_effect_figure",
    "routing_curve_figure",
]

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
                        mode="lines+markers", name=name, line={"color": COLOURS[i % len(COLOURS)],
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
                                     line={"color": COLOURS[i % len(COLOURS)]},
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
                                "color": COLOURS[i % len(COLOURS)]},
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
                    mode="lines+markers", name="hybrid, weighted fusion", line={"color": COLOURS[0]},
                    hovertemplate=f"dense weight %{{x}}<br>{metric}: %{{y:.3f}}<extra></extra>")
    others = [p for p in study.points if p.dense_weight is None]
    for i, p in enumerate(others, 1):
        value = round(p.metrics.get(metric, 0.0), 4)
        fig.add_scatter(x=[0, 1], y=[value, value], mode="lines", name=f"{p.label} ({value:.3f})",
                        line={"dash": "dash", "color": COLOURS[i % len(COLOURS)]}, hoverinfo="skip")
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
                                 marker_color=COLOURS[i]), row=1, col=col)
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
                        mode="lines+markers", name=name, line={"color": COLOURS[i % len(COLOURS)]},
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
