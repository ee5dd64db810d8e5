"""The app's Results and Drill-down tabs: quality with intervals, cost, latency and single queries,
for this session's runs and the stored runs picked from the history."""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

from workbench import columns, plots
from workbench.columns import Outcome
from workbench.datasets import Dataset

__all__ = ["show_drilldown", "show_results"]


def with_pipeline(outcome: Outcome, dataset: Dataset) -> Outcome:
    """A stored run's pipeline, for its chunks in the drill-down and cost: chunked and indexed again (its
    embeddings come from the cache), never evaluated again."""
    if outcome.pipeline is not None:
        return outcome
    from workbench.experiment import build_pipeline

    with st.spinner(f"Chunking for {outcome.label}…"):
        outcome = dataclasses.replace(outcome, pipeline=build_pipeline(outcome.config, dataset))
    st.session_state.stored[outcome.run_id] = outcome
    return outcome


# --- results ------------------------------------------------------------------------------------


def measured_levers(workload: Any) -> tuple[Any, dict[str, Any]]:
    """The workload with the cache hit rates measured on the traced traffic (unless the sidebar's
    sliders override them), and every lever labelled measured or assumed."""
    from workbench.levers import levers
    from workbench.store import default_store_path
    from workbench.tracing import TraceStore
    from workbench.tracing.metrics import measured_cache_rates

    measured: dict[str, Any] = {}
    path = default_store_path()
    if path.exists() and not st.session_state.get("wl.override"):  # never create a store to read nothing
        store = TraceStore(path)
        try:
            rates = measured_cache_rates(store)
        finally:
            store.close()
        if rates.prompt_cache_hit_rate is not None:
            measured.update(prompt_cache_hit_rate=rates.prompt_cache_hit_rate,
                            prompt_cache_from=f"{rates.prompt_cache_requests} traced requests")
        if rates.response_cache_hit_rate is not None:
            measured.update(response_cache_hit_rate=rates.response_cache_hit_rate,
                            response_cache_from=f"{rates.response_cache_lookups} traced lookups")
    return levers(workload, **measured)


def show_results(outcomes: dict[str, Outcome], workload: Any, dataset: Dataset) -> None:
    from workbench.costs import cost_per_query, monthly_cost

    done = {k: o for k, o in outcomes.items() if not o.error}
    if not outcomes:
        st.info("Set up the configurations and press **Run**, or pick stored runs in the sidebar.")
        return
    for label, o in outcomes.items():
        if o.error:
            st.error(f"{label}: {o.error}")
    scored = {k: o.result for k, o in done.items() if o.result.aggregates}
    if done and not scored:
        st.info("The dataset has no questions, so there is nothing to score: the configurations were chunked "
                "and indexed; ask questions in the Playground.")
    if scored:
        st.subheader("Quality")
        try:
            summary = plots.metric_summary(scored)
        except ValueError as exc:  # a stored run evaluated on other questions
            st.error(f"Not compared: {exc}. Set **Questions to evaluate** to the stored run's number and run again.")
            return
        st.dataframe(plots.summary_display(summary), key="results.table")
        n = int(summary["n"].max())
        st.caption(f"Mean over {n} queries [95% bootstrap interval]. ▲/▼: the paired difference against "
                   f"{next(iter(scored))} is significant (its 95% interval excludes 0"
                   + ("; needs at least 30 queries" if n < 30 else "") + ").")
        with st.expander("Exact numbers and p-values"):
            st.dataframe(summary, key="results.summary")
    if workload is None or not done:
        return
    workload, figures = measured_levers(workload)
    per_query, monthly = {}, {}
    for label, o in done.items():
        try:
            chunks = with_pipeline(o, dataset).pipeline.chunks
            wl = dataclasses.replace(workload, chunk_tokens=columns.mean_chunk_tokens(chunks))
            per_query[label] = cost_per_query(o.config, wl)
            monthly[label] = monthly_cost(o.config, wl)
        except ValueError as exc:
            st.error(f"{label}: cost not computed: {exc}")
    if not per_query:
        return
    st.subheader("Cost")
    left, right = st.columns(2)
    left.plotly_chart(plots.cost_per_1k_figure(per_query), key="chart.cost")
    right.plotly_chart(plots.monthly_cost_figure(monthly), key="chart.monthly")
    st.caption("Token counts are offline estimates (legacy Claude tokenizer); context uses each config's mean "
               "chunk length. " + " ".join(sorted({n for b in per_query.values() for n in b.notes})))
    first = next(iter(monthly))
    st.plotly_chart(plots.cost_waterfall_figure(monthly[first], {k: f.source for k, f in figures.items()}),
                    key="chart.waterfall")
    st.caption(f"Levers of {first}: " + "; ".join(
        f"{f.lever.replace('_', ' ')} {f.source}" + (f" {f.value:.0%}" if f.value is not None else "") + f" ({f.detail})"
        for f in figures.values()))
    left, right = st.columns(2)
    if scored and set(scored) <= set(per_query):
        metric = plots.primary_metric(scored)
        left.plotly_chart(plots.quality_cost_figure(
            {k: r.aggregates[metric] for k, r in scored.items()},
            {k: per_query[k].total * 1000 for k in scored}, metric=metric), key="chart.pareto")
    latency = plots.latency_percentiles({k: o.result for k, o in done.items() if o.result.rows})
    if not latency.empty:
        right.plotly_chart(plots.latency_figure(latency), key="chart.latency")


def show_drilldown(outcomes: dict[str, Outcome], dataset: Dataset) -> None:
    done = {k: o for k, o in outcomes.items() if not o.error and o.result.rows}
    if not done:
        st.info("Run the configurations on a dataset with questions to inspect single queries.")
        return
    first = next(iter(done.values())).result
    texts = {r.query_id: r.query for r in first.rows}
    qid = st.selectbox("Query", list(texts), format_func=lambda q: f"{q}: {texts[q][:100]}", key="drill.query")
    k = st.slider("Hits shown", 1, 20, 5, key="drill.k")
    for col, (label, o) in zip(st.columns(len(done)), done.items()):
        row = next((r for r in o.result.rows if r.query_id == qid), None)
        with col:
            st.markdown(f"**{label}**")
            if row is None:
                st.warning("this config did not evaluate the query")
                continue
            st.caption(" · ".join(f"{m} {v:.3f}" for m, v in row.metrics.items()))
            relevant = plots.relevant_frame(row, dataset)
            if not relevant.empty:
                found = int(relevant["found"].sum())
                st.markdown(f"Relevant documents found: **{found} of {len(relevant)}**")
                relevant["rank"] = ["missed" if r != r else str(int(r)) for r in relevant["rank"]]  # NaN: missed
                st.dataframe(relevant, hide_index=True, key=f"drill.relevant.{label}")
            chunks = {c.id: c for c in with_pipeline(o, dataset).pipeline.chunks}
            for h in plots.hit_frame(row, chunks, dataset, k=k).itertuples(index=False):
                badge = f":green[relevant (grade {h.grade})]" if h.grade > 0 else ":gray[not judged relevant]"
                st.markdown(f"**#{h.rank}** · score {h.score:.3f} · `{h.doc_id}` · {badge}")
                st.html(f'<div style="max-height:12em;overflow:auto;font-size:0.85em;border-left:3px solid #ccc;'
                        f'padding-left:0.5em;white-space:pre-wrap">{h.html}</div>')
