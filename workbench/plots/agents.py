"""Figures and tables for agents (pages/2_Agents.py, notebook 06): the loop's timeline, diagrams, patterns x models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .style import COLOURS

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ..agents import TrialResult

__all__ = ["trial_timeline_frame", "trial_timeline_figure", "diagram_layout", "diagrams_figure",
           "agent_comparison_figure"]

_KIND_COLOURS = {"llm": COLOURS[0], "tool": COLOURS[2], "error": COLOURS[4], "invalid": COLOURS[1]}


def trial_timeline_frame(trial: TrialResult) -> pd.DataFrame:
    """One row per step of the loop: model turn or tool call, when it started (s after the first), what it did."""
    import pandas as pd

    events = list(trial.events)
    origin = events[0]["at"] if events else 0.0
    rows = []
    for n, e in enumerate(events, 1):
        if e["kind"] == "llm":
            what = e["invalid"] or (", ".join(c["name"] for c in e["calls"]) or (e["text"] or "")[:80])
            kind = "invalid" if e["invalid"] else "llm"
        else:
            what = f"{e['name']} -> {e['result'][:80]}"
            kind = "error" if e["error"] else "tool"
        rows.append({"step": n, "kind": kind, "purpose": e.get("purpose", ""), "start_s": e["at"] - origin,
                     "duration_s": e["latency_s"] or 0.0, "what": what,
                     "tokens": (e.get("input_tokens") or 0) + (e.get("output_tokens") or 0)})
    return pd.DataFrame(rows, columns=["step", "kind", "purpose", "start_s", "duration_s", "what", "tokens"])


def trial_timeline_figure(trial: TrialResult) -> go.Figure:
    """The loop as a timeline: one bar per model turn (blue), tool call (green) or failed call (red)."""
    import plotly.graph_objects as go

    frame = trial_timeline_frame(trial)
    fig = go.Figure()
    for kind, colour in _KIND_COLOURS.items():
        part = frame[frame["kind"] == kind]
        if part.empty:
            continue
        fig.add_bar(y=[f"{s}. {k}" for s, k in zip(part["step"], part["kind"])], x=1e3 * part["duration_s"].clip(lower=1e-4),
                    base=1e3 * part["start_s"], orientation="h", name=kind, marker_color=colour,
                    hovertext=part["what"], hoverinfo="text+x")
    fig.update_layout(title=f"{trial.task_id}, trial {trial.trial}: {trial.status}, "
                            f"{'solved' if trial.success else 'not solved'}", xaxis_title="ms since the first step",
                      yaxis={"autorange": "reversed"}, barmode="overlay", height=max(250, 28 * len(frame) + 120))
    return fig


def diagram_layout(*diagrams: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Positions for every node of the diagrams (shared, so two diagrams line up): layers by longest path from a source."""
    nodes = list(dict.fromkeys(n for d in diagrams for n in d["nodes"]))
    edges = {(e["source"], e["target"]) for d in diagrams for e in d["edges"]}
    layer = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):  # relax; cycles stop after len(nodes) rounds
        changed = False
        for s, t in edges:
            if layer[t] < layer[s] + 1 <= len(nodes):
                layer[t], changed = layer[s] + 1, True
        if not changed:
            break
    rows: dict[int, list[str]] = {}
    for n in nodes:
        rows.setdefault(layer[n], []).append(n)
    return {n: (float(x), -float(i) + (len(members) - 1) / 2) for x, members in rows.items() for i, n in enumerate(members)}


def diagrams_figure(final: Mapping[str, Any], goal: Mapping[str, Any], *, titles: Sequence[str] = ("final", "goal")) -> go.Figure:
    """The final diagram beside the goal, nodes in the same places; nodes and edges that differ in red."""
    from plotly.subplots import make_subplots

    pos = diagram_layout(final, goal)
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles))
    pairs = [(final, goal), (goal, final)]
    for col, (shown, other) in enumerate(pairs, 1):
        other_edges = {(e["source"], e["target"], e["label"]) for e in other["edges"]}
        for e in shown["edges"]:
            (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
            differs = (e["source"], e["target"], e["label"]) not in other_edges
            fig.add_scatter(x=[x0, x1], y=[y0, y1], mode="lines", showlegend=False, hoverinfo="skip",
                            line={"color": COLOURS[4] if differs else "#999", "width": 2}, row=1, col=col)
            if e["label"]:
                fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=e["label"], showarrow=False,
                                   font={"size": 9}, row=1, col=col)
            axis = "" if col == 1 else str(col)
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref=f"x{axis}", yref=f"y{axis}", axref=f"x{axis}",
                               ayref=f"y{axis}", showarrow=True, arrowhead=2, arrowcolor="#999", text="")
        names = list(shown["nodes"])
        differs = [shown["nodes"][n] != other["nodes"].get(n) for n in names]
        fig.add_scatter(
            x=[pos[n][0] for n in names], y=[pos[n][1] for n in names], mode="markers+text", showlegend=False,
            text=[f"{n}<br>({shown['nodes'][n]['type']})" for n in names], textposition="top center",
            hovertext=[f"{n}: {shown['nodes'][n]['properties']}" for n in names], hoverinfo="text",
            marker={"size": 18, "color": [COLOURS[4] if d else COLOURS[0] for d in differs]}, row=1, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=420, margin={"t": 40, "l": 10, "r": 10, "b": 10})
    return fig


def agent_comparison_figure(summaries: Mapping[str, Mapping[str, float]], *, k: int) -> go.Figure:
    """Success rate and pass^k per configuration (label -> `AgentReport.summary()`), grouped bars."""
    import plotly.graph_objects as go

    labels = list(summaries)
    fig = go.Figure()
    fig.add_bar(x=labels, y=[summaries[lab]["success_rate"] for lab in labels], name="success rate", marker_color=COLOURS[0])
    fig.add_bar(x=labels, y=[summaries[lab]["pass_hat_k"] for lab in labels], name=f"pass^{k}", marker_color=COLOURS[1])
    fig.add_bar(x=labels, y=[summaries[lab]["tool_call_accuracy"] for lab in labels], name="tool-call accuracy",
                marker_color=COLOURS[2])
    fig.update_layout(barmode="group", yaxis={"range": [0, 1.05], "title": "share"}, height=380)
    return fig
