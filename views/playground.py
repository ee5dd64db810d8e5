"""The app's Playground tab: ask one configuration a question, see the answer, its citations,
tokens, cost and trace, and rate it (drawn by app.py)."""

from __future__ import annotations

import time

import streamlit as st

from workbench.columns import answer_cost
from workbench.config import PipelineConfig
from workbench.datasets import Dataset

__all__ = ["show_playground"]


def show_playground(configs: dict[str, PipelineConfig], dataset: Dataset) -> None:
    from workbench import tracing
    from workbench.experiment import build_pipeline

    ss = st.session_state
    if not configs:
        st.info("Fix the configurations first: none is valid.")
        return
    label = st.selectbox("Configuration", list(configs), key="pg.config")
    question = st.text_input("Question", key="pg.question", placeholder="Ask something the documents answer")
    if st.button("Ask", key="pg.ask", disabled=not question.strip()):
        config = configs[label]
        outcome = ss.outcomes.get(label)
        placeholder = st.empty()
        streamed: list[str] = []
        first_token: list[float] = []
        started = time.perf_counter()

        def on_text(piece: str) -> None:
            if not first_token:
                first_token.append(time.perf_counter() - started)
            streamed.append(piece)
            placeholder.markdown("".join(streamed) + " ▌")

        try:
            with st.spinner("Retrieving and generating…"):
                pipeline = outcome.pipeline if outcome and outcome.config == config and outcome.pipeline else \
                    build_pipeline(config, dataset)
                if not tracing.tracing_enabled():
                    tracing.enable_tracing()
                response = pipeline.answer(question, on_text=on_text)  # traced as one request
                tracing.flush()
            ss.answer = {"label": label, "response": response, "trace_id": tracing.last_trace_id(),
                         "seconds": time.perf_counter() - started, "ttft": first_token[0] if first_token else None}
            ss["pg.feedback"] = None
        except Exception as exc:  # noqa: BLE001 - show the failure where the answer would be
            placeholder.empty()
            ss.answer = None
            st.error(f"{type(exc).__name__}: {exc}")
            return
        placeholder.empty()
    shown = ss.answer
    if not shown:
        return
    response = shown["response"]
    answer, usage = response.answer, response.answer.usage
    st.markdown(f"**{shown['label']}** answered with `{response.model}`:")
    st.markdown(answer.text)
    cost = answer_cost(usage, response.model)
    ttft = usage.time_to_first_token_s if usage.time_to_first_token_s is not None else shown["ttft"]
    cols = st.columns(5)
    cols[0].metric("Input tokens", f"{usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens:,}")
    cols[1].metric("Output tokens", f"{usage.output_tokens:,}")
    cols[2].metric("Latency", f"{shown['seconds']:.2f} s")
    cols[3].metric("Time to first token", f"{ttft:.2f} s" if ttft is not None else "–")
    cols[4].metric("Cost", f"${cost:.5f}")
    if not usage.counted:
        st.caption(f"Tokens and cost from {usage.model}: offline estimates or none (no provider accounting).")
    from workbench.generation import cited_passages

    st.markdown("**Citations**")  # numbered as the answer's markers number them
    for chunk_id, (n, hit) in zip(answer.citations, cited_passages(answer.citations, response.hits)):
        title = (f"[{n}] `{chunk_id}` · rank {hit.rank} · score {hit.score:.3f}" if hit
                 else f"`{chunk_id}` (not retrieved)")
        with st.expander(title):
            st.text(hit.chunk.text if hit else "")
    if not answer.citations:
        st.caption("The answer cites no chunk.")
    if shown["trace_id"]:
        st.caption(f"Trace `{shown['trace_id']}`")
        st.feedback("thumbs", key="pg.feedback", on_change=store_feedback)
        if ss.get("pg.feedback_saved"):
            st.caption(ss["pg.feedback_saved"])


def store_feedback() -> None:
    from workbench import tracing

    ss = st.session_state
    value, shown = ss.get("pg.feedback"), ss.get("answer")
    if value is None or not shown or not shown.get("trace_id"):
        return
    store = tracing.TraceStore()
    try:
        store.add_feedback(shown["trace_id"], thumbs_up=value == 1)
        ss["pg.feedback_saved"] = f"Feedback {'👍' if value == 1 else '👎'} stored with the trace."
    except KeyError as exc:
        ss["pg.feedback_saved"] = f"Feedback not stored: {exc}"
    finally:
        store.close()
