"""What the app and notebooks show, built from results: Plotly figures and the tables behind them.

Pure functions of experiment results, cost breakdowns, traces and study results; no Streamlit
here, so every figure can be checked in a test or a notebook. Configurations are keyed by a
display label, and every function keeps the order of its input mapping (the first entry is the
baseline).

Modules by subject: `quality` (metric summaries, quality against cost), `costs`, `latency`,
`hits` (one query's hits and references), `traces`, `studies` (the notebooks' figures) and
`style` (the palette).
"""

from __future__ import annotations

from . import costs, hits, latency, quality, studies, traces
from .costs import COST_COMPONENTS, cost_per_1k_figure, cost_waterfall_figure, monthly_cost_figure
from .hits import highlight_html, hit_frame, relevant_frame
from .latency import PERCENTILES, latency_figure, latency_percentiles
from .quality import metric_summary, primary_metric, quality_cost_figure, summary_display
from .studies import (
    chunk_cost_figure,
    chunk_size_figure,
    context_tradeoff_figure,
    filter_effect_figure,
    fusion_weight_figure,
    rerank_depth_figure,
    rerank_scatter_figure,
    routing_curve_figure,
)
from .traces import trace_percentiles_figure, trace_timeline_figure

__all__ = [
    *quality.__all__,
    *costs.__all__,
    *latency.__all__,
    *hits.__all__,
    *traces.__all__,
    *studies.__all__,
]
