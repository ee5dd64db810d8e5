"""workbench: compare two to four RAG pipeline configurations side by side (`make run`).

Widgets in, library calls, figures from `workbench.plots` out. State lives in
`st.session_state`, initialised once; every widget has a key.
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from pathlib import Path
from typing import Any

import streamlit as st

from workbench import plots
from workbench.config import ConfigError, PipelineConfig, dumps_config, from_dict, load_config, to_dict
from workbench.datasets import Dataset, load_dataset
from workbench.synthetic import is_synthetic

ROOT = Path(__file__).resolve().parent
PRESETS = {p.stem: p for p in sorted((ROOT / "configs").glob("*.toml"))}
DEFAULT_PRESETS = ("bm25", "dense", "hybrid", "recursive-256")
MAX_CONFIGS = 4
SOURCES = {"cranfield": "Cranfield (bundled, judged documents)", "chunking": "Chunking spans (bundled)",
           "upload": "Upload files"}
# (field, label, widget, options or (min, max, step)); "generation.model" also sets a fixed router's model.
FIELDS: tuple[tuple[str, str, str, Any], ...] = (
    ("chunking.method", "Chunker", "select", ("none", "fixed", "recursive", "semantic")),
    ("chunking.size", "Chunk size (tokens)", "int", (8, 8192, 32)),
    ("chunking.overlap", "Chunk overlap (tokens)", "int", (0, 8191, 16)),
    ("embedding.model", "Embedding model", "text", None),
    ("retrieval.kind", "Retriever", "select", ("bm25", "dense", "hybrid")),
    ("retrieval.fusion", "Fusion", "select", ("rrf", "weighted")),
    ("retrieval.dense_weight", "Fusion weight (dense)", "float", (0.0, 1.0, 0.05)),
    ("retrieval.k", "Retrieve k", "int", (1, 1000, 10)),
    ("reranking.kind", "Reranker", "select", ("none", "maxsim", "mmr", "cross-encoder", "llm", "trained")),
    ("reranking.candidates", "Rerank top N", "int", (1, 1000, 10)),
    ("reranking.k", "Keep after reranking", "int", (1, 1000, 1)),
    ("routing.kind", "Router", "select", ("fixed", "rules", "learned", "retrieval", "cascade")),
    ("generation.kind", "Generator", "select", ("extractive", "local", "anthropic")),
    ("generation.model", "Model (priced)", "select", None),
    ("generation.context_chunks", "Context chunks", "int", (1, 50, 1)),
    ("generation.prompt_caching", "Prompt caching", "bool", None),
    ("generation.batch_share", "Batch API share", "float", (0.0, 1.0, 0.05)),
)
WRITERS = {"local": "Gemma 3 270M (local, offline)", "anthropic": "Claude (needs ANTHROPIC_API_KEY)"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    """One column's run: the config, and its result and pipeline, or the error that stopped it."""

    label: str
    column: int
    config: PipelineConfig
    result: Any = None  # workbench.experiment.ExperimentResult
    pipeline: Any = None  # workbench.experiment.Pipeline
    error: str = ""
    seconds: float = 0.0
    embedded: int = 0  # texts this run embedded (cache misses), documents and queries together
    reused: bool = False  # the result of an identical earlier run was shown again


# --- state --------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def price_models() -> list[str]:
    from workbench.costs import load_prices

    return sorted(load_prices())


@st.cache_resource(show_spinner="Loading the dataset…")
def cached_dataset(name_or_path: str) -> Dataset:
    return load_dataset(name_or_path)


def _get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *heads, last = dotted.split(".")
    for part in heads:
        data = data[part]
    data[last] = value


def load_into_column(i: int, config: PipelineConfig) -> None:
    """Put `config` into column i's widgets (its other fields are kept as the column's base)."""
    ss = st.session_state
    ss[f"cfg{i}.base"] = config
    ss[f"cfg{i}.name"] = config.name
    data = to_dict(config)
    for dotted, *_ in FIELDS:
        ss[f"cfg{i}.{dotted}"] = _get(data, dotted)


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
    ss.result_cache = {}  # (config hash, dataset fingerprint, query ids) -> ExperimentResult
    ss.answer = None  # the playground's last response, its label and trace id
    ss.synthetic = None  # the synthetic questions of the current upload: folder, file, writer, chunking
    for i in range(MAX_CONFIGS):
        ss[f"cfg{i}.preset"] = DEFAULT_PRESETS[i]
        load_into_column(i, load_config(PRESETS[DEFAULT_PRESETS[i]]))


def column_keys() -> list[str]:
    """Session keys of every column's config widgets (not its file uploader or download button)."""
    return [f"cfg{i}.{name}" for i in range(MAX_CONFIGS) for name in ("preset", "name", *(f[0] for f in FIELDS))]


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
        data = tomllib.loads(upload.getvalue().decode("utf-8"))
        data.setdefault("name", Path(upload.name).stem)
        load_into_column(i, from_dict(PipelineConfig, data))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ConfigError) as exc:
        ss[f"cfg{i}.toml_error"] = f"{upload.name} was not loaded: {exc}"


def column_config(i: int) -> PipelineConfig:
    """Column i's widgets over its base config. Raises ConfigError for a bad combination."""
    ss = st.session_state
    data = to_dict(ss[f"cfg{i}.base"])
    data["name"] = ss[f"cfg{i}.name"] or f"config {i + 1}"
    for dotted, *_ in FIELDS:
        _set(data, dotted, ss[f"cfg{i}.{dotted}"])
    if data["routing"]["kind"] == "fixed":
        data["routing"]["model"] = data["generation"]["model"]
    return from_dict(PipelineConfig, data)


def _flat(config: PipelineConfig) -> dict[str, Any]:
    def walk(d: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(walk(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    flat = walk(to_dict(config), "")
    flat.pop("name", None)
    return flat


# --- dataset ------------------------------------------------------------------------------------


def pick_dataset() -> tuple[Dataset, Path | None]:
    """The sidebar's dataset and, for an upload, its folder; shows an error and stops when there is none."""
    from workbench.uploads import UploadedFile, UploadError, store_upload

    source = st.sidebar.radio("Dataset", list(SOURCES), format_func=SOURCES.get, key="data.source")
    if source != "upload":
        return cached_dataset(source), None
    files = st.sidebar.file_uploader(
        "Documents: .txt .md .html .pdf, or a .zip of them (200 MB at most)",
        type=["zip", "txt", "md", "html", "pdf"], accept_multiple_files=True, key="data.files",
    )
    questions = st.sidebar.file_uploader(
        "Questions (optional): questions.csv with references, or BEIR queries.jsonl + qrels .tsv",
        type=["csv", "jsonl", "tsv"], accept_multiple_files=True, key="data.questions",
    )
    if not files:
        st.info("Upload documents in the sidebar (or pick a bundled dataset) to begin.")
        st.stop()
    try:
        stored = store_upload([UploadedFile(name=f.name, data=f, size=f.size) for f in files],
                              [UploadedFile(name=f.name, data=f, size=f.size) for f in questions or ()])
        dataset = cached_dataset(str(stored.path))
    except UploadError as exc:
        st.sidebar.error(str(exc))
        st.error(f"The upload was not used: {exc}")
        st.stop()
    except (ValueError, KeyError, OSError) as exc:  # DatasetError and malformed question files
        st.sidebar.error(f"The upload could not be read as a dataset: {exc}")
        st.error(f"The upload could not be read as a dataset: {exc}")
        st.stop()
    if stored.skipped:
        st.sidebar.caption("Left out: " + "; ".join(stored.skipped[:10]))
    return dataset, stored.path


@st.cache_resource(show_spinner=False)
def cached_synthetic(folder: str, path: str) -> Dataset:
    from workbench.synthetic import load_questions

    return load_questions(cached_dataset(folder), Path(path))


def offer_synthetic(dataset: Dataset, folder: Path) -> Dataset:
    """For an upload without questions: the sidebar's offer to write some, or the set once written."""
    ss = st.session_state
    made = ss.get("synthetic")
    if not made or made["folder"] != str(folder):
        slot = st.sidebar.empty()
        made = build_synthetic(dataset, folder, slot.container(border=True))
        if made is None:
            return dataset
        slot.empty()
        ss.synthetic = made
    box = st.sidebar.container(border=True)
    box.markdown(":violet-badge[synthetic questions] written by " + made["writer"])
    box.caption(f"From config 1's chunks ({made['chunking']}), one question per sampled chunk, each tied to its "
                f"chunk's span; span metrics favour that chunking. Kept in `{made['path']}`.")
    box.button("Stop using the synthetic questions", key="syn.discard", on_click=forget_synthetic)
    return cached_synthetic(str(folder), made["path"])


def forget_synthetic() -> None:
    st.session_state.synthetic = None


def build_synthetic(dataset: Dataset, folder: Path, box: Any) -> dict[str, str] | None:
    """The offer's widgets; on a click, the set written (or read back) and its label, else None."""
    from workbench.experiment import build_pipeline
    from workbench.synthetic import build_synthetic_set

    box.info("No questions: runs chunk and index the documents; ask them in the Playground, or build a synthetic "
             "evaluation set: questions written from config 1's chunks, each tied to its chunk's span.")
    kind = box.selectbox("Question writer", list(WRITERS), format_func=WRITERS.get, key="syn.kind")
    n = box.number_input("Number of questions", 1, 500, 10, key="syn.n")
    seed = box.number_input("Sampling seed", 0, 2**31 - 1, 0, key="syn.seed")
    if not box.button("Build a synthetic evaluation set", key="syn.build"):
        return None
    bar = box.progress(0.0, text="chunking with config 1")
    try:
        config = column_config(0)
        chunks = build_pipeline(config, dataset).chunks
        generation = dataclasses.replace(config.generation, kind=kind)
        _, path = build_synthetic_set(
            dataset, chunks, generation, folder=folder, n=int(n), seed=int(seed),
            progress=lambda done, total: bar.progress(done / total, text=f"wrote from {done} of {total} chunks"),
        )
    except Exception as exc:  # noqa: BLE001 - show why in place; the documents stay usable
        bar.empty()
        box.error(f"No synthetic set was built: {type(exc).__name__}: {exc}")
        return None
    writer = WRITERS[kind].split(" (")[0] + (f" `{generation.model}`" if kind == "anthropic" else "")
    return {"folder": str(folder), "path": str(path), "writer": writer,
            "chunking": "whole documents" if config.chunking.method == "none" else
            f"`{config.chunking.method}`, size {config.chunking.size}"}


def sidebar_workload() -> Any:
    from workbench.costs import Workload

    st.sidebar.subheader("Workload (for costs)")
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


# --- configuration columns -------------------------------------------------------------------------


def _widget(i: int, dotted: str, label: str, kind: str, spec: Any, differs: bool) -> None:
    key = f"cfg{i}.{dotted}"
    shown = f":orange-background[{label}] ≠" if differs else label
    help_text = f"`{dotted}`" + (" — differs from config 1" if differs else "")
    if kind == "int":  # a loaded TOML may hold a value outside the usual range
        value = st.session_state[key]
        spec = (min(spec[0], value), max(spec[1], value), spec[2])
    if kind == "select":
        options = list(spec) if spec is not None else price_models()
        if st.session_state[key] not in options:  # a loaded TOML may name a value this list lacks
            options.append(st.session_state[key])
        st.selectbox(shown, options, key=key, help=help_text)
    elif kind == "int":
        st.number_input(shown, min_value=spec[0], max_value=spec[1], step=spec[2], key=key, help=help_text)
    elif kind == "float":
        st.slider(shown, min_value=spec[0], max_value=spec[1], step=spec[2], key=key, help=help_text)
    elif kind == "bool":
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
    for dotted, label, kind, spec in FIELDS:
        differs = i > 0 and ss[f"cfg{i}.{dotted}"] != ss[f"cfg0.{dotted}"]
        _widget(i, dotted, label, kind, spec, differs)
    try:
        config = column_config(i)
    except ConfigError as exc:
        st.error(f"Invalid configuration: {exc}")
        return None
    if i > 0:
        try:
            first = _flat(column_config(0))
        except ConfigError:
            first = {}
        diff = [f"`{k}` {first.get(k)!r} → **{v!r}**" for k, v in _flat(config).items() if first.get(k) != v]
        if first:
            st.markdown(":orange[**Differs from config 1:**] " + ("; ".join(diff) if diff else "nothing"))
    st.download_button("Save as TOML", dumps_config(config), file_name=f"{config.name}.toml",
                       mime="application/toml", key=f"cfg{i}.download")
    return config


def label_of(i: int, config: PipelineConfig) -> str:
    return f"{i + 1}. {config.name}"


# --- running ------------------------------------------------------------------------------------


def run_column(i: int, config: PipelineConfig, dataset: Dataset, qids: list[str], slot: Any) -> Outcome:
    """Build and evaluate one config, reporting each stage on its progress bar; never raises."""
    from workbench.config import config_hash
    from workbench.embedding import load_embedder
    from workbench.experiment import build_pipeline, needs_embedder, run_experiment

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
        key = (config_hash(config), dataset.fingerprint(), tuple(qids))
        result = st.session_state.result_cache.get(key)
        reused = result is not None
        if not reused:
            result = run_experiment(config, dataset, embedder=embedder, query_ids=qids)
            st.session_state.result_cache[key] = result
        seconds = time.perf_counter() - started
        bar.progress(1.0, text=f"done in {seconds:.1f} s")
        return Outcome(label=label, column=i, config=config, result=result, pipeline=pipeline, seconds=seconds,
                       embedded=(embedder.stats.misses - misses_before) if embedder else 0, reused=reused)
    except Exception as exc:  # noqa: BLE001 - one config's failure must not take the others down
        bar.progress(1.0, text="failed")
        return Outcome(label=label, column=i, config=config, error=f"{type(exc).__name__}: {exc}",
                       seconds=time.perf_counter() - started)


def show_outcome(outcome: Outcome | None, slot: Any) -> None:
    if outcome is None:
        return
    with slot.container():
        if outcome.error:
            st.error(f"Run failed: {outcome.error}")
            return
        r = outcome.result
        st.success(f"{len(r.rows)} queries, {r.n_chunks} chunks in {outcome.seconds:.1f} s; "
                   f"embedded {outcome.embedded} new texts" + ("; same result as the last identical run"
                                                               if outcome.reused else ""))


# --- results ------------------------------------------------------------------------------------


def chunk_tokens(outcome: Outcome) -> int:
    """Mean estimated Claude tokens of this config's chunks (a sample), for pricing the context."""
    from workbench.costs import estimate_tokens

    chunks = outcome.pipeline.chunks
    sample = chunks[:: max(1, len(chunks) // 200)]
    return round(sum(estimate_tokens(c.text) for c in sample) / len(sample))


def show_results(outcomes: dict[str, Outcome], workload: Any) -> None:
    from workbench.costs import cost_per_query, monthly_cost

    done = {k: o for k, o in outcomes.items() if not o.error}
    if not outcomes:
        st.info("Set up the configurations and press **Run**.")
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
        summary = plots.metric_summary(scored)
        st.dataframe(plots.summary_display(summary), key="results.table")
        n = int(summary["n"].max())
        st.caption(f"Mean over {n} queries [95% bootstrap interval]. ▲/▼: the paired difference against "
                   f"{next(iter(scored))} is significant (its 95% interval excludes 0"
                   + ("; needs at least 30 queries" if n < 30 else "") + ").")
        with st.expander("Exact numbers and p-values"):
            st.dataframe(summary, key="results.summary")
    if workload is None or not done:
        return
    per_query, monthly = {}, {}
    for label, o in done.items():
        try:
            wl = dataclasses.replace(workload, chunk_tokens=chunk_tokens(o))
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
    columns = st.columns(len(done))
    for col, (label, o) in zip(columns, done.items()):
        row = next((r for r in o.result.rows if r.query_id == qid), None)
        with col:
            st.markdown(f"**{label}**")
            if row is None:
                st.warning("this config did not evaluate the query")
                continue
            metric_line = " · ".join(f"{m} {v:.3f}" for m, v in row.metrics.items())
            st.caption(metric_line)
            relevant = plots.relevant_frame(row, dataset)
            if not relevant.empty:
                found = int(relevant["found"].sum())
                st.markdown(f"Relevant documents found: **{found} of {len(relevant)}**")
                relevant["rank"] = ["missed" if r != r else str(int(r)) for r in relevant["rank"]]  # NaN: missed
                st.dataframe(relevant, hide_index=True, key=f"drill.relevant.{label}")
            hits = plots.hit_frame(row, {c.id: c for c in o.pipeline.chunks}, dataset, k=k)
            for h in hits.itertuples(index=False):
                badge = f":green[relevant (grade {h.grade})]" if h.grade > 0 else ":gray[not judged relevant]"
                st.markdown(f"**#{h.rank}** · score {h.score:.3f} · `{h.doc_id}` · {badge}")
                st.html(f'<div style="max-height:12em;overflow:auto;font-size:0.85em;border-left:3px solid #ccc;'
                        f'padding-left:0.5em;white-space:pre-wrap">{h.html}</div>')


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
    cost = usage.cost_usd
    if not cost and response.model in price_models():
        from workbench.costs import price_of, usage_cost

        cost = usage_cost(usage, price_of(response.model))
    ttft = usage.time_to_first_token_s if usage.time_to_first_token_s is not None else shown["ttft"]
    cols = st.columns(5)
    cols[0].metric("Input tokens", f"{usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens:,}")
    cols[1].metric("Output tokens", f"{usage.output_tokens:,}")
    cols[2].metric("Latency", f"{shown['seconds']:.2f} s")
    cols[3].metric("Time to first token", f"{ttft:.2f} s" if ttft is not None else "–")
    cols[4].metric("Cost", f"${cost:.5f}")
    if not usage.counted:
        st.caption(f"Tokens and cost from {usage.model}: offline estimates or none (no provider accounting).")
    by_id = {h.chunk.id: h for h in response.hits}
    st.markdown("**Citations**")
    for n, chunk_id in enumerate(answer.citations, 1):
        hit = by_id.get(chunk_id)
        title = f"[{n}] `{chunk_id}`" + (f" · rank {hit.rank} · score {hit.score:.3f}" if hit else " (not retrieved)")
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


# --- the page -------------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="workbench: compare RAG configurations", layout="wide")
    init_state()
    ss = st.session_state
    st.title("Compare RAG configurations")
    dataset, folder = pick_dataset()
    if folder is not None and not dataset.evaluated_queries:
        dataset = offer_synthetic(dataset, folder)
    evaluated = dataset.evaluated_queries
    st.sidebar.caption(f"{dataset.name}: {len(dataset.documents)} documents, {len(evaluated)} judged questions")
    n_queries = 0
    if evaluated:
        n_queries = st.sidebar.number_input("Questions to evaluate", 1, len(evaluated), len(evaluated),
                                            key="data.n_queries")
    n_configs = st.sidebar.slider("Configurations", 2, MAX_CONFIGS, 2, key="n_configs")
    workload = sidebar_workload()

    tab_config, tab_results, tab_drill, tab_play = st.tabs(["Configure & run", "Results", "Drill-down",
                                                            "Playground"])
    columns: dict[int, PipelineConfig | None] = {}
    slots = {}
    with tab_config:
        run = st.button("Run", type="primary", key="run")
        for i, col in enumerate(st.columns(n_configs)):
            with col:
                st.subheader(f"Config {i + 1}")
                slots[i] = st.empty()
                columns[i] = config_column(i)
    configs = {label_of(i, c): c for i, c in columns.items() if c is not None}
    if run:
        qids = evaluated[:n_queries]
        ss.outcomes_dataset = dataset.fingerprint()
        ss.outcomes = {
            label_of(i, c): run_column(i, c, dataset, qids, slots[i]) for i, c in columns.items() if c is not None
        }
    if ss.get("outcomes_dataset") != dataset.fingerprint():
        ss.outcomes = {}
    for i, config in columns.items():
        if config is not None:
            show_outcome(ss.outcomes.get(label_of(i, config)), slots[i])
    current = {k: o for k, o in ss.outcomes.items() if configs.get(k) == o.config}
    if len(current) < len(ss.outcomes):
        st.sidebar.warning("Some configurations changed since the last run: press Run to update the results.")
    with tab_results:
        if is_synthetic(dataset):
            st.info(":violet-badge[synthetic questions] The questions were written by a model from the documents' "
                    "chunks, not by people: compare configurations with them, but do not read the scores as absolute.")
        show_results(current, workload)
    with tab_drill:
        show_drilldown(current, dataset)
    with tab_play:
        show_playground(configs, dataset)


main()
