"""The app's dataset sidebar: a bundled dataset or an upload (every failure shown in place, the
documents kept when only the questions are bad), and the synthetic questions offer for uploads
without questions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from workbench.config import PipelineConfig
from workbench.datasets import Dataset, DatasetError, load_dataset

__all__ = ["SOURCES", "offer_synthetic", "pick_dataset"]

SOURCES = {"cranfield": "Cranfield (bundled, judged documents)", "chunking": "Chunking spans (bundled)",
           "upload": "Upload files"}
WRITERS = {"local": "Gemma 3 270M (local, offline)", "anthropic": "Claude (needs ANTHROPIC_API_KEY)"}


@st.cache_resource(show_spinner="Loading the dataset…")
def cached_dataset(name_or_path: str) -> Dataset:
    if name_or_path in SOURCES:
        return load_dataset(name_or_path)
    return load_dataset(name_or_path, unreadable="skip")  # an upload: a bad document is left out, named


def pick_dataset() -> tuple[Dataset, Path | None]:
    """The sidebar's dataset and, for an upload, its folder; shows an error and stops when there is none."""
    from workbench.uploads import UploadedFile, store_upload

    source = st.sidebar.radio("Dataset", list(SOURCES), format_func=SOURCES.get, key="data.source")
    if source != "upload":
        return cached_dataset(source), None
    files = st.sidebar.file_uploader(
        "Documents: .txt .md .html .pdf, or a .zip of them (200 MB at most)",
        type=["zip", "txt", "md", "markdown", "html", "htm", "pdf"], accept_multiple_files=True, key="data.files",
    )
    questions = st.sidebar.file_uploader(
        "Questions (optional): questions.csv with references, or BEIR queries.jsonl + qrels .tsv",
        type=["csv", "jsonl", "tsv"], accept_multiple_files=True, key="data.questions",
    )
    if not files:
        st.info("Upload documents in the sidebar (or pick a bundled dataset) to begin.")
        st.stop()
    wrap = lambda group: [UploadedFile(name=f.name, data=f, size=f.size) for f in group or ()]  # noqa: E731
    try:
        try:
            stored = store_upload(wrap(files), wrap(questions))
            dataset = cached_dataset(str(stored.path))
        except DatasetError as exc:
            if not questions:
                raise
            stored = store_upload(wrap(files))  # the documents stay usable without the questions
            dataset = cached_dataset(str(stored.path))
            st.error(f"The questions were not used: {exc}")
    except DatasetError as exc:  # every loader and upload failure, naming the file
        st.sidebar.error(str(exc))
        st.error(f"The upload was not used: {exc}")
        st.stop()
    if stored.skipped or dataset.left_out:
        st.sidebar.caption("Left out: " + "; ".join([*stored.skipped, *dataset.left_out][:10]))
    return dataset, stored.path


@st.cache_resource(show_spinner=False)
def cached_synthetic(folder: str, path: str) -> Dataset:
    from workbench.synthetic import load_questions

    return load_questions(cached_dataset(folder), Path(path))


def offer_synthetic(dataset: Dataset, folder: Path, first_config: Callable[[], PipelineConfig]) -> Dataset:
    """For an upload without questions: the sidebar's offer to write some, or the set once written."""
    ss = st.session_state
    made = ss.get("synthetic")
    if not made or made["folder"] != str(folder):
        slot = st.sidebar.empty()
        made = build_synthetic(dataset, folder, slot.container(border=True), first_config)
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


def build_synthetic(dataset: Dataset, folder: Path, box: Any, first_config: Callable[[], PipelineConfig]
                    ) -> dict[str, str] | None:
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
        config = first_config()
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
