"""Agents: pick an environment, a pattern and a model, run the tasks, and inspect each trial's loop."""

from __future__ import annotations

import os

import streamlit as st

from workbench.agents import APPROVAL_POLICIES, PATTERNS, AgentConfig, load_environment
from workbench.evaluation.agents import evaluate_agents
from workbench.plots.agents import diagrams_figure, trial_timeline_figure, trial_timeline_frame
from workbench.store import StoreError, default_store_path

MODELS = ["scripted", "local"] + (["claude-haiku-4-5", "claude-sonnet-4-5"] if os.environ.get("ANTHROPIC_API_KEY") else [])
POLICIES = [p for p in APPROVAL_POLICIES if p != "ask"]  # a batch run cannot stop to ask

st.set_page_config(page_title="Agents · workbench", layout="wide")
st.title("Agents")
st.caption("Tool-calling agents on LangGraph, judged by the outcome: the final diagram equal to the goal, or an "
           "answer citing a relevant document. `scripted` replays each task's reference (it checks the tasks); "
           "`local` is Gemma 3 270M under a JSON grammar (seconds per step here).")


@st.cache_resource(show_spinner="Loading the environment...")
def environment(name: str):  # type: ignore[no-untyped-def]
    return load_environment(name) if name == "diagram" else load_environment(name, dataset="chunking", questions=30)


ss = st.session_state
with st.sidebar:
    env_name = st.selectbox("Environment", ["diagram", "documents"], key="agents_env")
    st.selectbox("Pattern", PATTERNS, index=PATTERNS.index("react"), key="agents_pattern")
    st.selectbox("Model", MODELS, key="agents_model")
    st.number_input("Trials per task", 1, 10, 1, key="agents_trials")
    st.number_input("Step limit (model calls)", 1, 100, 40, key="agents_steps")
    st.selectbox("Destructive tools", POLICIES, index=POLICIES.index("approve_all"), key="agents_approval",
                 help="approve_all / deny_all: reviewed by that policy; off: run without review")
env = environment(env_name)
ids = [t.id for t in env.tasks]
chosen = st.multiselect("Tasks", ids, default=ids[:5], key=f"agents_tasks_{env_name}")
if not chosen:
    st.info("Pick at least one task.")
    st.stop()

if st.button("Run", type="primary", key="agents_run"):
    config = AgentConfig(env=env_name, pattern=ss.agents_pattern, model=ss.agents_model, trials=int(ss.agents_trials),
                         max_steps=int(ss.agents_steps), approval=ss.agents_approval, tasks=tuple(chosen))
    bar = st.progress(0.0, text="running")
    total = len(chosen) * config.trials
    done = []
    try:
        ss.agents_report = evaluate_agents(
            config, env, store=default_store_path(),
            progress=lambda t: (done.append(t), bar.progress(min(1.0, len(done) / total), text=f"{t.task_id} {t.status}")))
    except (StoreError, ValueError, ImportError) as exc:
        st.error(str(exc))
        st.stop()
    bar.empty()

report = ss.get("agents_report")
if report is None:
    st.info("Choose the tasks and press Run.")
    st.stop()

summary = report.summary()
cols = st.columns(6)
for col, (label, key, fmt) in zip(cols, [("success", "success_rate", "{:.0%}"), (f"pass^{report.config.trials}", "pass_hat_k", "{:.0%}"),
                                         ("tool-call accuracy", "tool_call_accuracy", "{:.0%}"),
                                         ("invalid calls", "invalid_call_rate", "{:.1%}"), ("model calls / task", "mean_steps", "{:.1f}"),
                                         ("cost / task", "cost_per_task_usd", "${:.5f}")]):
    col.metric(label, fmt.format(summary[key]))
st.caption(f"{report.config.pattern} x {report.config.model}, run {report.run_id} (stored in the run store; "
           "finished trials are reused when the same run is asked again)")
frame = report.to_frame()
st.dataframe(frame, hide_index=True, width="stretch", key="agents_table")

labels = [f"{t.task_id} #{t.trial}" for t in report.trials]
pick = st.selectbox("Trial", range(len(labels)), format_func=lambda i: labels[i], key="agents_trial")
trial = report.trials[pick]
if trial.error:
    st.error(trial.error)
st.plotly_chart(trial_timeline_figure(trial), key="agents_timeline")
st.dataframe(trial_timeline_frame(trial), hide_index=True, width="stretch", key="agents_steps_table")
if env.name == "diagram":
    st.plotly_chart(diagrams_figure(trial.final_state, env.task(trial.task_id).goal), key="agents_diagrams")
else:
    st.markdown(f"**Answer:** {trial.answer}")
