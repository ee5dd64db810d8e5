"""workbench: compare two to four RAG pipeline configurations side by side (`make run`).

Widgets and layout only: the page and the configuration columns here, the dataset sidebar and
the tabs in views/; the field list, config diff, pricing and runs come from `workbench.columns`.
State lives in `st.session_state`, initialised once; every widget has a key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from views.data import offer_synthetic, pick_dataset
from views.playground import show_playground
from views.results import show_drilldown, show_results
from workbench import columns
from workbench.columns import Field, Outcome
from workbench.config import ConfigError, PipelineConfig, dumps_config, load_config, loads
from workbench.datasets import Dataset
from workbench.synthetic import is_synthetic

ROOT = Path(__file__).resolve().parent
PRESETS = {p.stem: p for p in sorted((ROOT / "configs").glob("*.toml"))}
DEFAULT_PRESETS = ("bm25", "dense", "hybrid", "recursive-256")
MAX_CONFIGS = 4


# --- state --------------------------------------------------------------------------------------


def load_into_column(i: int, config: PipelineConfig) -> None:
    """Put a valid `config` into column i's widgets (its other fields are kept as the column's base)."""
    ss = st.session_state
    ss[f"cfg{i}.base"] = config
    ss[f"cfg{i}.name"] = config.name
    for path, value in columns.widget_values(config).items():
        ss[f"cfg{i}.{path}"] = value


def init_state() -> None:
    ss = st.session_state
    if ss.get("initialised"):
        # Streamlit drops the state of widgets a run did not draw (columns beyond the slider, every
        # column while an upload is awaited and the page stops); assigning it keeps the configs.
        for key in column_keys():
            ss[key] = ss[key]
        return
    ss.initialised = True
    ss.outcomes = {}  # label -> Outcome of the last run
    ss.stored = {}  # run id -> Outcome of a stored run picked from the history
    ss.answer = None  # the playground's last response, its label and trace id
    ss.synthetic = None  # the synthetic questions of the current upload: folder, file, writer, chunking
    for i in range(MAX_CONFIGS):
        ss[f"cfg{i}.preset"] = DEFAULT_PRESETS[i]
        load_into_column(i, load_config(PRESETS[DEFAULT_PRESETS[i]]))


def column_keys() -> list[str]:
    """Session keys of every column's config widgets (not its file uploader or download button)."""
    names = ("preset", "name", *(f.path for f in columns.config_fields()))
    return [f"cfg{i}.{name}" for i in range(MAX_CONFIGS) for name in names]


def apply_preset(i: int) -> None:
    name = st.session_state[f"cfg{i}.preset"]
    load_into_column(i, load_config(PRESETS[name]) if name in PRESETS else PipelineConfig())


def apply_toml(i: int) -> None:
    ss = st.session_state
    upload = ss.get(f"cfg{i}.toml")
    ss[f"cfg{i}.toml_error"] = ""
    if upload is None:
        return
    try:
        load_into_column(i, loads(upload.getvalue(), source=upload.name))
    except ConfigError as exc:
        ss[f"cfg{i}.toml_error"] = f"{upload.name} was not loaded: {exc}"


def column_config(i: int) -> PipelineConfig:
    """Column i's widgets over its base config. Raises ConfigError for a bad combination."""
    ss = st.session_state
    values = {f.path: ss[f"cfg{i}.{f.path}"] for f in columns.config_fields()}
    return columns.column_config(ss[f"cfg{i}.base"], ss[f"cfg{i}.name"] or f"config {i + 1}", values)


# --- sidebar ------------------------------------------------------------------------------------


def sidebar_workload() -> Any:
    from workbench.costs import Workload

    st.sidebar.subheader("Workload (for costs)")
    st.sidebar.checkbox("Sliders override the measured rates", key="wl.override",
                        help="Cache hit rates measured on the traced traffic replace the sliders below unless "
                             "this is on; the cost charts label each lever measured or assumed.")
    try:
        return Workload(
            queries_per_day=st.sidebar.number_input("Queries per day", 0, 100_000_000, 10_000, 1000, key="wl.qpd"),
            days_per_month=st.sidebar.number_input("Days per month", 1, 31, 30, key="wl.days"),
            query_tokens=st.sidebar.number_input("Question tokens", 0, 100_000, 30, 10, key="wl.query"),
            output_tokens=st.sidebar.number_input("Answer tokens", 0, 100_000, 300, 50, key="wl.output"),
            history_turns=st.sidebar.number_input("Chat history turns", 0, 100, 0, key="wl.history"),
            prompt_cache_hit_rate=st.sidebar.slider("Prompt cache hit rate", 0.0, 1.0, 0.8, 0.05, key="wl.hit"),
            response_cache_hit_rate=st.sidebar.slider("Response cache hit rate", 0.0, 1.0, 0.0, 0.05,
                                                      key="wl.response"),
        )
    except ValueError as exc:
        st.sidebar.error(str(exc))
        return None


def sidebar_history(dataset: Dataset) -> dict[str, Outcome]:
    """Stored runs of this dataset picked as extra columns, read from the run store (never rerun)."""
    from workbench.store import StoreError

    ss = st.session_state
    try:
        runs = {r.id: r for r in columns.stored_runs(dataset)}
        ss["history"] = [r for r in ss.get("history", []) if r in runs]  # the dataset may have changed
        st.sidebar.multiselect(
            "Compare with stored runs", list(runs), key="history", placeholder="none" if runs else "no runs yet",
            format_func=lambda r: f"{runs[r].name} · {runs[r].n_queries} queries · {runs[r].finished_at:%m-%d %H:%M}"
                                  f" · {r[:8]}")
        for run_id in ss["history"]:
            if run_id not in ss.stored:
                ss.stored[run_id] = columns.stored_outcome(runs[run_id])
    except StoreError as exc:
        st.sidebar.error(f"Run history unavailable: {exc}")
        return {}
    return {ss.stored[r].label: ss.stored[r] for r in ss["history"]}


# --- configuration columns -------------------------------------------------------------------------


def _widget(i: int, field: Field, differs: bool) -> None:
    key = f"cfg{i}.{field.path}"
    shown = f":orange-background[{field.label}] ≠" if differs else field.label
    help_text = f"`{field.path}`" + (" — differs from config 1" if differs else "")
    if field.widget == "select":
        value = st.session_state[key]
        options = list(field.options) + ([value] if value not in field.options else [])  # a TOML may name more
        st.selectbox(shown, options, key=key, help=help_text)
    elif field.widget == "slider":
        st.slider(shown, min_value=field.low, max_value=field.high, step=field.step, key=key, help=help_text)
    elif field.widget in ("int", "float"):
        st.number_input(shown, min_value=field.low, max_value=field.high, step=field.step, key=key, help=help_text,
                        format=None if field.widget == "int" else "%g")
    elif field.widget == "bool":
        st.checkbox(shown, key=key, help=help_text)
    else:
        st.text_input(shown, key=key, help=help_text)


def config_column(i: int) -> PipelineConfig | None:
    """Column i's widgets; returns its config, or None after showing why it is invalid."""
    ss = st.session_state
    st.selectbox("Start from preset", [*PRESETS, "defaults"], key=f"cfg{i}.preset", on_change=apply_preset,
                 args=(i,))
    st.file_uploader("…or load a TOML config", type=["toml"], key=f"cfg{i}.toml", on_change=apply_toml, args=(i,))
    if ss.get(f"cfg{i}.toml_error"):
        st.error(ss[f"cfg{i}.toml_error"])
    st.text_input("Name", key=f"cfg{i}.name")
    fields = columns.config_fields()
    differs = {f.path: i > 0 and ss[f"cfg{i}.{f.path}"] != ss[f"cfg0.{f.path}"] for f in fields}
    for field in (f for f in fields if f.main):
        _widget(i, field, differs[field.path])
    with st.expander("More settings"):
        for field in (f for f in fields if not f.main):
            _widget(i, field, differs[field.path])
    try:
        config = column_config(i)
    except ConfigError as exc:
        st.error(f"Invalid configuration: {exc}")
        return None
    if i > 0:
        try:
            diff = columns.config_diff(column_config(0), config)
            shown = "; ".join(f"`{k}` {a!r} → **{b!r}**" for k, a, b in diff)
            st.markdown(":orange[**Differs from config 1:**] " + (shown or "nothing"))
        except ConfigError:
            pass  # config 1 shows its own error
    st.download_button("Save as TOML", dumps_config(config), file_name=f"{config.name}.toml",
                       mime="application/toml", key=f"cfg{i}.download")
    return config


def label_of(i: int, config: PipelineConfig) -> str:
    return f"{i + 1}. {config.name}"


# --- running ------------------------------------------------------------------------------------


def run_column(i: int, config: PipelineConfig, dataset: Dataset, qids: list[str], slot: Any) -> Outcome:
    """Build and evaluate one config (stored in the run store), reporting on its progress bar; never raises."""
    from workbench.embedding import load_embedder
    from workbench.experiment import build_pipeline, needs_embedder

    label = label_of(i, config)
    bar = slot.progress(0.0, text="starting")
    started = time.perf_counter()
    try:
        embedder = None
        if needs_embedder(config):
            bar.progress(0.05, text="loading the embedding model")
            embedder = load_embedder(config.embedding)
        misses_before = embedder.stats.misses if embedder else 0
        bar.progress(0.15, text="chunking, embedding and indexing")
        pipeline = build_pipeline(config, dataset, embedder=embedder)
        bar.progress(0.6, text=f"evaluating {len(qids)} queries")
        result, run_id, reused = columns.run_config(config, dataset, qids)
        seconds = time.perf_counter() - started
        bar.progress(1.0, text=f"done in {seconds:.1f} s")
        return Outcome(label=label, config=config, result=result, pipeline=pipeline, seconds=seconds, run_id=run_id,
                       embedded=(embedder.stats.misses - misses_before) if embedder else 0, reused=reused)
    except Exception as exc:  # noqa: BLE001 - one config's failure must not take the others down
        bar.progress(1.0, text="failed")
        return Outcome(label=label, config=config, error=f"{type(exc).__name__}: {exc}",
                       seconds=time.perf_counter() - started)


def show_outcome(outcome: Outcome | None, slot: Any) -> None:
    if outcome is None:
        return
    with slot.container():
        if outcome.error:
            st.error(f"Run failed: {outcome.error}")
            return
        r, run = outcome.result, outcome.run_id
        kept = f"served from the run store (run {run}, an identical request)" if outcome.reused else f"stored as run {run}"
        st.success(f"{len(r.rows)} queries, {r.n_chunks} chunks in {outcome.seconds:.1f} s; embedded "
                   f"{outcome.embedded} new texts; {kept}")


# --- the page -------------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="workbench: compare RAG configurations", layout="wide")
    init_state()
    ss = st.session_state
    st.title("Compare RAG configurations")
    dataset, folder = pick_dataset()
    if folder is not None and not dataset.evaluated_queries:
        dataset = offer_synthetic(dataset, folder, lambda: column_config(0))
    evaluated = dataset.evaluated_queries
    st.sidebar.caption(f"{dataset.name}: {len(dataset.documents)} documents, {len(evaluated)} judged questions")
    n_queries = 0
    if evaluated:
        n_queries = st.sidebar.number_input("Questions to evaluate", 1, len(evaluated), len(evaluated),
                                            key="data.n_queries")
    n_configs = st.sidebar.slider("Configurations", 2, MAX_CONFIGS, 2, key="n_configs")
    history = sidebar_history(dataset)
    workload = sidebar_workload()

    tab_config, tab_results, tab_drill, tab_play = st.tabs(["Configure & run", "Results", "Drill-down",
                                                            "Playground"])
    configured: dict[int, PipelineConfig | None] = {}
    slots = {}
    with tab_config:
        run = st.button("Run", type="primary", key="run")
        for i, col in enumerate(st.columns(n_configs)):
            with col:
                st.subheader(f"Config {i + 1}")
                slots[i] = st.empty()
                configured[i] = config_column(i)
    configs = {label_of(i, c): c for i, c in configured.items() if c is not None}
    if run:
        qids = evaluated[:n_queries]
        ss.outcomes_dataset = dataset.fingerprint()
        ss.outcomes = {label_of(i, c): run_column(i, c, dataset, qids, slots[i])
                       for i, c in configured.items() if c is not None}
    if ss.get("outcomes_dataset") != dataset.fingerprint():
        ss.outcomes = {}
    for i, config in configured.items():
        if config is not None:
            show_outcome(ss.outcomes.get(label_of(i, config)), slots[i])
    current = {k: o for k, o in ss.outcomes.items() if configs.get(k) == o.config}
    if len(current) < len(ss.outcomes):
        st.sidebar.warning("Some configurations changed since the last run: press Run to update the results.")
    shown = {**current, **history}
    with tab_results:
        if is_synthetic(dataset):
            st.info(":violet-badge[synthetic questions] The questions were written by a model from the documents' "
                    "chunks, not by people: compare configurations with them, but do not read the scores as absolute.")
        show_results(shown, workload, dataset)
    with tab_drill:
        show_drilldown(shown, dataset)
    with tab_play:
        show_playground(configs, dataset)


main()
