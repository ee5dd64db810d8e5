"""Incremental ingestion into persistent indexes: only changed documents, resume after a backend dies."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from workbench.config import ConfigError, EmbeddingConfig, PipelineConfig, RetrievalConfig
from workbench.embedding import Embedder
from workbench.ingest import ingest, ingest_every, parse_interval
from workbench.retrieval import DenseRetriever
from workbench.vectorstores import read_manifest

TOPICS = {
    "wings.md": "# Wings\n\nSwept wings delay the drag rise at transonic speeds.\n\nFlutter couples bending and torsion.",
    "heat.md": "# Heat\n\nAerodynamic heating grows with the cube of speed.\n\nAblative shields protect re-entry bodies.",
    "noise.txt": "Jet noise scales with the eighth power of exhaust velocity, Lighthill found.",
    "layers.txt": "A laminar boundary layer turns turbulent past a critical Reynolds number.",
    "shocks.md": "# Shocks\n\nA normal shock slows supersonic flow to subsonic speed.",
}


@pytest.fixture()
def docs(tmp_path):
    """Five short documents; a random tag makes every text new to the shared embedding cache."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in TOPICS.items():
        (folder / name).write_text(f"{text} [{uuid.uuid4().hex[:8]}]", encoding="utf-8")
    return folder


def config_for(backend: str, pg_url: str = "") -> PipelineConfig:
    index = {"faiss": "flat", "pgvector": "hnsw", "chroma": "hnsw", "lancedb": "flat", "milvus": "flat", "qdrant": "hnsw"}[backend]
    return PipelineConfig(retrieval=RetrievalConfig(kind="dense", backend=backend, index=index,
                                                    backend_url=pg_url if backend == "pgvector" else ""))


@pytest.mark.parametrize("backend", ["faiss", "pgvector", "chroma", "lancedb", "milvus", "qdrant"])
def test_ingest_embeds_only_what_changed_and_refuses_another_model(docs, tmp_path, embedder, pg_url, backend):
    config = config_for(backend, pg_url)
    index = tmp_path / "index"
    first = ingest(docs, index, config=config, embedder=embedder)
    assert (first.added, first.changed, first.deleted, first.unchanged) == (5, 0, 0, 0)
    assert first.rows_written == first.chunks == first.texts_embedded > 0
    again = ingest(docs, index, config=config, embedder=embedder)
    assert (again.added, again.changed, again.deleted, again.unchanged) == (0, 0, 0, 5)
    assert again.texts_embedded == again.rows_written == again.rows_deleted == 0
    (docs / "noise.txt").write_text(f"Jet noise falls when the exhaust is mixed with bypass air. [{uuid.uuid4().hex[:8]}]", encoding="utf-8")
    (docs / "heat.md").unlink()
    (docs / "valves.txt").write_text(f"Bleed valves keep a compressor from surging. [{uuid.uuid4().hex[:8]}]", encoding="utf-8")
    update = ingest(docs, index, config=config, embedder=embedder)
    assert (update.added, update.changed, update.deleted, update.unchanged) == (1, 1, 1, 3)
    assert update.texts_embedded == 2  # the new text of noise.txt and valves.txt; nothing else
    manifest = read_manifest(index)
    assert sorted(manifest) == ["layers.txt", "noise.txt", "shocks.md", "valves.txt", "wings.md"]
    retriever = DenseRetriever.load(index, embedder)
    assert retriever.index.backend == backend and retriever.index.count() == update.chunks
    hits = retriever.retrieve("what stops a compressor surging", 2)
    assert hits[0].chunk.doc_id == "valves.txt"
    assert all(h.chunk.doc_id != "heat.md" for h in retriever.retrieve("aerodynamic heating", 10))
    assert retriever.retrieve("jet exhaust", 1, where={"source": "noise.txt"})[0].chunk.text.startswith("Jet noise falls")
    retriever.close()
    other = Embedder(EmbeddingConfig(model="BAAI/bge-small-en-v1.5"))  # never loaded: the id is enough
    with pytest.raises(ConfigError, match="embedding model mismatch.*all-MiniLM-L6-v2.*bge-small"):
        DenseRetriever.load(index, other)
    with pytest.raises(ConfigError, match="embedding model mismatch"):
        ingest(docs, index, config=config, embedder=other)


def test_ingest_resumes_after_the_database_dies_mid_ingest(docs, tmp_path, embedder, pg_url):
    import psycopg

    for i in range(12):
        (docs / f"extra{i:02d}.txt").write_text(f"Note {i}: wind tunnel run {i} measured lift at {i} degrees.", encoding="utf-8")
    index = tmp_path / "index"
    config = config_for("pgvector", pg_url)

    def kill(done: int) -> None:  # after the first batch: PostgreSQL drops the ingest's connection
        info = json.loads((index / "index.json").read_text(encoding="utf-8"))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                         (f"workbench:{info['settings']['name']}",))

    with pytest.raises(psycopg.OperationalError):
        ingest(docs, index, config=config, embedder=embedder, batch_documents=5, on_batch=kill)
    assert len(read_manifest(index)) == 5  # the first batch is recorded, the rest is not
    resumed = ingest(docs, index, config=config, embedder=embedder, batch_documents=5)
    assert (resumed.added, resumed.unchanged) == (12, 5)
    retriever = DenseRetriever.load(index, embedder)
    ids = [c.id for c in retriever.chunks]
    assert len(ids) == len(set(ids)) == retriever.index.count()  # no duplicates, no losses
    assert {c.doc_id for c in retriever.chunks} == {p.name for p in docs.iterdir()}
    retriever.close()


def test_two_indexes_on_one_server_do_not_share_rows(tmp_path, docs, embedder, pg_url):
    a = ingest(docs, tmp_path / "a", config=config_for("pgvector", pg_url), embedder=embedder)
    (docs / "wings.md").unlink()
    b = ingest(docs, tmp_path / "b", config=config_for("pgvector", pg_url), embedder=embedder)
    assert b.chunks < a.chunks
    assert DenseRetriever.load(tmp_path / "a", embedder).index.count() == a.chunks


def test_bad_input(tmp_path, docs, embedder):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(ValueError, match="not a workbench index"):
        ingest(docs, tmp_path / "foreign", embedder=embedder)
    assert (tmp_path / "foreign" / "thesis.pdf").read_bytes() == b"%PDF-1.4"  # never overwritten
    ingest(docs, tmp_path / "idx", embedder=embedder)
    with pytest.raises(ConfigError, match="is a faiss index; ingest into it with --backend faiss"):
        ingest(docs, tmp_path / "idx", embedder=embedder, backend="chroma")
    for bad in ("10", "m", "-5m", "10 weeks"):
        with pytest.raises(ValueError, match="e.g. 30s, 10m"):
            parse_interval(bad)
    assert parse_interval("10m") == 600 and parse_interval("1.5h") == 5400


def test_every_repeats_and_survives_a_failed_run(docs, tmp_path, embedder):
    reports, sleeps, calls = [], [], []

    def run():
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk briefly unavailable")
        return ingest(docs, tmp_path / "idx", embedder=embedder)

    failures = ingest_every(60, run, reports.append, runs=3, sleep=sleeps.append)
    assert failures == 1 and len(reports) == 2 and len(sleeps) == 2
    assert reports[0].added == 5 and reports[1].unchanged == 5 and reports[1].texts_embedded == 0


def test_cli_ingest_json_twice(docs, tmp_path):
    index = tmp_path / "cli-index"
    command = [sys.executable, "-m", "workbench", "ingest", str(docs), "--index", str(index), "--json"]
    first = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout)
    second = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout)
    assert first["added"] == 5 and first["texts_embedded"] <= first["rows_written"]
    assert (second["unchanged"], second["texts_embedded"], second["rows_written"]) == (5, 0, 0)
    failed = subprocess.run([*command[:5], str(tmp_path / "nowhere"), "--index", str(index)], capture_output=True,
                            text=True, timeout=600)
    assert failed.returncode == 2 and "error:" in failed.stderr


def test_run_experiment_searches_a_persistent_index(docs, tmp_path, embedder):
    from workbench.datasets import load_folder
    from workbench.experiment import build_pipeline

    ingest(docs, tmp_path / "idx", embedder=embedder)
    config = PipelineConfig(retrieval=RetrievalConfig(kind="dense", index_path=str(tmp_path / "idx"), k=3))
    pipeline = build_pipeline(config, load_folder(docs), embedder=embedder)
    hits, _ = pipeline.search("normal shock")
    assert hits[0].chunk.doc_id == "shocks.md"
    assert pipeline.retriever.index.count() == len(pipeline.retriever.chunks)
