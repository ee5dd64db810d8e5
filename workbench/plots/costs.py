"""Cost figures from cost-model breakdowns: stacked components per configuration, the levers' waterfall."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .style import COLOURS, COMPONENT_COLOURS

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..costs import CostBreakdown

__all__ = ["COST_COMPONENTS", "cost_per_1k_figure", "monthly_cost_figure", "cost_waterfall_figure"]

COST_COMPONENTS = {
    "uncached_input": "Uncached input",
    "cache_write": "Cache writes",
    "cache_read": "Cache reads",
    "output": "Output",
}


def _stacked_costs(breakdowns: Mapping[str, CostBreakdown], scale: float, title: str, unit: str) -> go.Figure:
    import plotly.graph_objects as go

    labels = list(breakdowns)
    fig = go.Figure()
    for (field, name), colour in zip(COST_COMPONENTS.items(), COMPONENT_COLOURS):
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


def cost_waterfall_figure(breakdown: CostBreakdown, sources: Mapping[str, str] | None = None) -> go.Figure:
    """From the naive cost, each lever's saving in turn (routing, prompt caching, batching,
    response cache), down to the cost with every lever on. `sources` labels each lever's rate
    "measured" or "assumed" (`workbench.levers.levers`), shown under its name."""
    import plotly.graph_objects as go

    unit = "month" if breakdown.unit == "month" else "query"
    sources = sources or {}
    names = [lever.replace("_", " ") + (f"<br>({sources[lever]})" if lever in sources else "")
             for lever in breakdown.savings]
    labels = ["naive", *names, "with every lever"]
    values = [breakdown.naive_total, *[-s for s in breakdown.savings.values()], breakdown.total]
    fig = go.Figure(go.Waterfall(
        x=labels, y=[round(v, 2) for v in values], measure=["absolute", *["relative"] * len(breakdown.savings), "total"],
        text=[f"-${-v:,.0f}" if v < 0 else f"${v:,.0f}" for v in values], textposition="outside",
        decreasing={"marker": {"color": COLOURS[2]}}, increasing={"marker": {"color": COLOURS[4]}},
        totals={"marker": {"color": COLOURS[0]}}, connector={"line": {"color": "#888"}},
    ))
    fig.update_layout(title=f"Cost per {unit}, lever by lever", yaxis_title=f"USD per {unit}",
                      showlegend=False, margin={"t": 60, "b": 40})
    return fig
