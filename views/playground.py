"""The app's Playground tab: a chat with one configuration. Each turn sends the history (fitted
to the config's token budget), shows the answer, which generator produced it, its citations,
tokens and cost with and without caching the history prefix, and its trace (drawn by app.py)."""

from __future__ import annotations

import time

import streamlit as st

from workbench.config import PipelineConfig, config_hash
from workbench.datasets import Dataset

__all__ = ["show_playground"]


def _conversation(label: str, config: PipelineConfig, dataset: Dataset):  # -> Conversation
    """The chat of this configuration, kept in the session; a changed config starts a new chat."""
    from workbench.conversation import Conversation
    from workbench.experiment import build_pipeline

    ss = st.session_state
    key = (label, config_hash(config), dataset.fingerprint())
    chats = ss.setdefault("pg.chats", {})
    if key not in chats:
        outcome = ss.outcomes.get(label)
        pipeline = outcome.pipeline if outcome and outcome.config == config and outcome.pipeline else \
            build_pipeline(config, dataset)
        chats[key] = Conversation(pipeline)
    return chats[key]


def _ask(chat, question: str, label: str) -> None:  # chat: Conversation
    from workbench import tracing

    ss = st.session_state
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
            if not tracing.tracing_enabled():
                tracing.enable_tracing()
            with tracing.tags(feature="playground"):
                turn = chat.ask(question, on_text=on_text)  # traced as one request
            tracing.flush()
        ss.answer = {"label": label, "response": turn.response, "turn": turn, "trace_id": tracing.last_trace_id(),
                     "seconds": time.perf_counter() - started, "ttft": first_token[0] if first_token else None}
        ss["pg.feedback"] = None
    except Exception as exc:  # noqa: BLE001 - show the failure where the answer would be
        ss.answer = None
        st.error(f"{type(exc).__name__}: {exc}")
    finally:
        placeholder.empty()


def _show_turn(turn, config: PipelineConfig) -> None:  # turn: ChatTurn
    from workbench.conversation import answered_by

    response, cost = turn.response, turn.cost
    with st.chat_message("user"):
        st.markdown(turn.question)
    with st.chat_message("assistant"):
        st.markdown(response.answer.text)
        where = "served from the response cache" if response.cache_hit else answered_by(config, response)
        sent = f"{len(turn.history.turns)} earlier turn(s) sent"
        if turn.history.dropped_turns:
            how = "summarised" if turn.history.summary else "dropped (truncated)"
            sent += f", {turn.history.dropped_turns} older {how} to fit {turn.history.budget} history tokens"
        kind = "counted by the API" if cost.counted else "offline estimates"
        st.caption(
            f"{where} · {sent} · {cost.input_tokens:,} input tokens ({cost.cached_prefix_tokens:,} of the "
            f"{cost.prefix_tokens:,}-token prefix read from the prompt cache), {cost.output_tokens:,} output · "
            f"${cost.with_caching_usd:.5f} with the history prefix cached, ${cost.without_caching_usd:.5f} "
            f"without ({kind})"
        )
        if response.dropped:
            st.caption(f"{len(response.dropped)} passage(s) left out to fit {config.budget.context_tokens} context "
                       f"tokens: {', '.join(response.dropped)}")


def show_playground(configs: dict[str, PipelineConfig], dataset: Dataset) -> None:
    ss = st.session_state
    if not configs:
        st.info("Fix the configurations first: none is valid.")
        return
    label = st.selectbox("Configuration", list(configs), key="pg.config")
    config = configs[label]
    chat = _conversation(label, config, dataset)
    for turn in chat.turns:
        _show_turn(turn, config)
    question = st.text_input("Question", key="pg.question", placeholder="Ask something the documents answer")
    left, right = st.columns([1, 5])
    if right.button("New chat", key="pg.new", disabled=not chat.turns):
        chat.turns.clear()
        ss.answer = None
        st.rerun()
    if left.button("Ask", key="pg.ask", disabled=not question.strip()):
        _ask(chat, question, label)
        if ss.get("answer"):
            _show_turn(ss.answer["turn"], config)
    shown = ss.get("answer")
    if shown and shown["label"] == label:
        _show_last(shown)


def _show_last(shown: dict) -> None:
    from workbench.columns import answer_cost
    from workbench.generation import cited_passages

    response = shown["response"]
    answer, usage = response.answer, response.answer.usage
    ttft = usage.time_to_first_token_s if usage.time_to_first_token_s is not None else shown["ttft"]
    cols = st.columns(5)
    cols[0].metric("Input tokens", f"{shown['turn'].cost.input_tokens:,}")
    cols[1].metric("Output tokens", f"{shown['turn'].cost.output_tokens:,}")
    cols[2].metric("Latency", f"{shown['seconds']:.2f} s")
    cols[3].metric("Time to first token", f"{ttft:.2f} s" if ttft is not None else "–")
    cols[4].metric("Cost", f"${answer_cost(usage, response.model):.5f}")
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
        if st.session_state.get("pg.feedback_saved"):
            st.caption(st.session_state["pg.feedback_saved"])


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
