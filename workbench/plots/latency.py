"""Per-query latency percentiles per configuration and stage, and their figure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .style import COLOURS

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ..results import ExperimentResult

__all__ = ["PERCENTILES", "latency_percentiles", "latency_figure"]

PERCENTILES = (50, 95, 99)


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
                                 marker_color=COLOURS[i % len(COLOURS)],
                                 hovertemplate=f"{config} · {stage}<br>%{{x}}: %{{y:.2f}} ms<extra></extra>"),
                          row=1, col=j)
    fig.update_layout(barmode="group", title="Latency per query by stage (ms)", margin={"t": 80, "b": 40})
    fig.update_yaxes(title_text="ms", col=1)
    return fig
