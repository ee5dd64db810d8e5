"""Traces: every traced request, one request's spans, prompt, answer, tokens and cost, and percentiles."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import streamlit as st

from workbench import plots, tracing
from workbench.store import StoreError, default_store_path
from workbench.tracing import TraceFilter

WINDOWS = {"Last hour": dt.timedelta(hours=1), "Last 24 hours": dt.timedelta(days=1),
           "Last 7 days": dt.timedelta(days=7), "All time": None}
BUCKETS = {"1 minute": "1min", "10 minutes": "10min", "1 hour": "1h", "1 day": "1D"}

st.set_page_config(page_title="Traces · workbench", layout="wide")
st.title("Traces")
st.caption("Requests recorded by `workbench.tracing` (turn it on with `tracing.enable_tracing()` or "
           "`WORKBENCH_TRACING=1`); spans also go to `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set.")

ss = st.session_state
ss.setdefault("traces_store", str(default_store_path()))

# --- the store and the filters ------------------------------------------------------------------
path = st.sidebar.text_input("Run store", key="traces_store")
try:  # only an existing store (or the configured one): a typo must not create files or folders
    store = tracing.TraceStore.open_existing(path)
except StoreError as exc:
    st.error(str(exc))
    st.stop()

st.sidebar.multiselect("Users", store.tag_values("user_tag"), key="traces_users")
st.sidebar.multiselect("Features", store.tag_values("feature_tag"), key="traces_features")
st.sidebar.selectbox("Status", ["all", "ok", "error"], key="traces_status")
st.sidebar.selectbox("Window", list(WINDOWS), index=len(WINDOWS) - 1, key="traces_window")
st.sidebar.text_input("Query or answer contains", key="traces_text")
window = WINDOWS[ss.traces_window]
where = TraceFilter(
    users=tuple(ss.traces_users),
    features=tuple(ss.traces_features),
    status=None if ss.traces_status == "all" else ss.traces_status,
    since=dt.datetime.now(dt.timezone.utc) - window if window else None,
    text=ss.traces_text.strip() or None,
)

frame = store.traces_frame(where)
if frame.empty:
    st.info("No traces match. Answer a question in the playground, or widen the filters.")
    st.stop()

# --- the request list ---------------------------------------------------------------------------
st.subheader(f"Requests ({len(frame)})")
shown = frame.assign(duration_ms=1e3 * frame["duration_s"])[
    ["started_at", "operation", "user", "feature", "model", "status", "duration_ms", "input_tokens",
     "output_tokens", "cost_usd", "feedback", "query", "trace_id"]
]
st.dataframe(shown, hide_index=True, width="stretch", key="traces_table")
labels = {r.trace_id: f"{r.started_at:%Y-%m-%d %H:%M:%S} · {r.operation} · {r.query[:70] or r.trace_id}"
          for r in frame.itertuples()}
if ss.get("traces_selected") not in labels:
    ss.traces_selected = next(iter(labels))
trace_id = st.selectbox("Request", list(labels), format_func=labels.__getitem__, key="traces_selected")

# --- one request --------------------------------------------------------------------------------
record = store.trace(trace_id)
spans = store.spans(trace_id)
cols = st.columns(6)
cols[0].metric("Latency", f"{1e3 * record.duration_s:.1f} ms")
cols[1].metric("Time to first token", f"{1e3 * record.ttft_s:.1f} ms" if record.ttft_s is not None else "–")
cols[2].metric("Input tokens", f"{record.input_tokens:,}")
cols[3].metric("Output tokens", f"{record.output_tokens:,}")
cols[4].metric("Cache read / write", f"{record.cache_read_tokens:,} / {record.cache_write_tokens:,}")
cols[5].metric("Cost", f"${record.cost_usd:.5f}")
if record.status == "error":
    st.error(f"Failed: {record.error}")
st.plotly_chart(plots.trace_timeline_figure(spans), key="traces_timeline")

generate = next((s.attributes for s in spans if s.name == "generate"), {})
left, right = st.columns(2)
with left:
    st.markdown(f"**Query** · model `{record.model or '–'}` · config `{record.config_name}`")
    st.markdown(record.query or "_(content not recorded)_")
    st.markdown("**Answer**")
    st.markdown(record.answer or "_(no answer recorded)_")
    if record.cited_doc_ids:
        st.caption("Cites documents " + ", ".join(f"`{d}`" for d in record.cited_doc_ids))
with right:
    st.markdown("**Prompt**")
    if "gen_ai.input.messages" in generate:
        system = json.loads(generate.get("gen_ai.system_instructions", "[]"))
        messages = json.loads(generate["gen_ai.input.messages"])
        prompt = [f"[system]\n{p['content']}" for p in system]
        prompt += [f"[{m['role']}]\n{p['content']}" for m in messages for p in m["parts"]]
        st.code("\n\n".join(prompt), language=None, height=300)
    else:
        st.caption("No prompt recorded (no generation, or content recording was off).")
with st.expander("Span attributes"):
    st.json({s.name: dict(s.attributes) for s in spans}, expanded=False)

st.markdown("**Feedback**")
fb_cols = st.columns([1, 1, 6])
st.text_input("Comment", key="traces_comment")
for col, key, up in ((fb_cols[0], "traces_thumbs_up", True), (fb_cols[1], "traces_thumbs_down", False)):
    if col.button("👍" if up else "👎", key=key):
        store.add_feedback(trace_id, thumbs_up=up, comment=ss.traces_comment)
for f in store.feedback(trace_id):
    st.caption(f"{f.created_at:%Y-%m-%d %H:%M} {'👍' if f.score > 0 else '👎'} {f.comment}")

def show_budget(store: tracing.TraceStore, tag: str, where: tracing.TraceFilter) -> None:
    """Monthly cost per user or feature projected from the traces, with a warning past the budget."""
    from workbench.tracing.metrics import monthly_projection

    budget = st.number_input("Monthly budget per " + tag + " (USD)", 0.0, 1e9, 100.0, 10.0, key="traces_budget")
    projected = monthly_projection(store, tag, budget_usd=budget, where=where)  # type: ignore[arg-type]
    st.dataframe([{tag: p.tag or "(untagged)", "requests": p.requests, "spent USD": round(p.spent_usd, 6),
                   "days observed": round(p.days_observed, 2), "projected USD / month": round(p.monthly_usd, 4)}
                  for p in projected], hide_index=True, key="traces_projection")
    over = [p for p in projected if p.over_budget]
    if over:
        st.warning(f"Projected past the ${budget:,.2f} monthly budget: " + ", ".join(
            f"{p.tag or '(untagged)'} ${p.monthly_usd:,.2f}" for p in over)
            + " (a linear projection of the traced cost since the first trace; at least one day observed)")
    st.caption("Projection: spent / days observed x 30; recorded costs are the traces' own (counted or priced).")


# --- metrics over the filtered traces -----------------------------------------------------------
st.subheader("Latency, cost and quality")
metrics = tracing.trace_metrics(store, where)
cols = st.columns(5)
cols[0].metric("Requests", metrics.n_requests)
cols[1].metric("Error rate", f"{metrics.error_rate:.1%}")
cols[2].metric("Cost per request", f"${metrics.cost_per_request_usd:.5f}")
cols[3].metric("Output tokens/s", f"{metrics.output_tokens_per_s:.0f}" if metrics.output_tokens_per_s else "–")
cols[4].metric("Thumbs up", f"{metrics.positive_feedback_rate:.0%}" if metrics.positive_feedback_rate is not None else "–")
st.dataframe(metrics.latency_frame(), hide_index=True, key="traces_latency")
bucket = st.selectbox("Bucket", list(BUCKETS), key="traces_bucket")
st.plotly_chart(plots.trace_percentiles_figure(tracing.percentiles_over_time(store, where, bucket=BUCKETS[bucket])),
                key="traces_percentiles")
tag = st.radio("Per", ["user", "feature"], horizontal=True, key="traces_by")
st.dataframe(tracing.metrics_by_tag(store, tag, where), hide_index=True, key="traces_by_tag")
show_budget(store, tag, where)

# --- feedback into evaluation data --------------------------------------------------------------
with st.expander("Export traces with feedback as an evaluation dataset"):
    st.text_input("Folder", value=str(Path(path).with_name("feedback-dataset")), key="traces_export_folder")
    if st.button("Export", key="traces_export"):
        try:
            folder = tracing.export_feedback_dataset(store, ss.traces_export_folder, where)
            st.success(f"Wrote {folder}: load it with `load_dataset({str(folder)!r})`.")
        except ValueError as exc:
            st.error(str(exc))
store.close()
