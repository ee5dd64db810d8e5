"""Figures for the trace view (pages/1_Traces.py), built from `TraceStore` records and frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .latency import PERCENTILES
from .style import COLOURS

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ..tracing import SpanRecord

__all__ = ["trace_timeline_figure", "trace_percentiles_figure"]

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
        marker_color=["#E45756" if s.status == "error" else COLOURS[min(depth[s.span_id], 2)] for s in spans],
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
                showlegend=j == 1, line={"color": COLOURS[i]}, customdata=rows["count"],
                hovertemplate=f"{stage} P{q}: %{{y:.2f}} ms<br>%{{x}} · %{{customdata}} requests<extra></extra>",
            ), row=1, col=j)
    fig.update_layout(title="Latency percentiles over time (ms)", margin={"t": 80, "b": 40})
    fig.update_yaxes(title_text="ms", col=1)
    return fig
