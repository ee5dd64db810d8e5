"""The experiment runner end to end on the bundled data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workbench.config import PipelineConfig, load_config, replace_path
from workbench.experiment import build_pipeline, document_ranking, run_experiment
from workbench.metrics import ndcg_at_k

ROOT = Path(__file__).resolve().parent.parent
FIRST_QUERIES = [str(i) for i in range(1, 31)]


def test_bm25_whole_documents_rows_and_aggregates(cranfield) -> None:
    config = load_config(ROOT / "configs" / "bm25.toml")
    result = run_experiment(config, cranfield, query_ids=FIRST_QUERIES)
    assert [r.query_id for r in result.rows] == FIRST_QUERIES
    assert result.n_chunks == len(cranfield.documents)
    row = result.rows[0]
    assert len(row.retrieved) == config.retrieval.k and len(set(row.retrieved)) == len(row.retrieved)
    assert row.metrics["ndcg@10"] == pytest.approx(ndcg_at_k(cranfield.qrels["1"], row.retrieved, 10))
    assert list(row.scores) == sorted(row.scores, reverse=True)
    for name in ("ndcg@10", "recall@100", "mrr@10", "map@100", "precision@10", "hit_rate@10"):
        assert result.aggregates[name] == pytest.approx(sum(r.metrics[name] for r in result.rows) / 30)
    assert 0.2 < result.aggregates["ndcg@10"] < 0.7  # BM25 on Cranfield is ~0.35 over all queries
    frame = result.to_frame()
    assert len(frame) == 30 and {"query_id", "latency_ms", "ndcg@10"} <= set(frame.columns)


def test_chunked_documents_count_at_their_best_chunk(cranfield) -> None:
    config = replace_path(replace_path(load_config(ROOT / "configs" / "bm25.toml"), "chunking.method", "fixed"), "chunking.size", 32)
    pipeline = build_pipeline(config, cranfield)
    assert len(pipeline.chunks) > len(cranfield.documents)
    hits, timings = pipeline.search(cranfield.queries["1"])
    docs = document_ranking(hits)
    assert len(docs) == len(set(docs)) and docs[0] == hits[0].chunk.doc_id
    assert "retrieve" in timings


def test_span_metrics_on_the_chunking_set(chunking_set) -> None:
    config = PipelineConfig(name="span")
    config = replace_path(replace_path(config, "retrieval.kind", "bm25"), "chunking.size", 128)
    result = run_experiment(config, chunking_set, query_ids=["1", "2", "3", "4", "5"])
    for row in result.rows:
        for name in ("span_recall@5", "span_precision@5", "span_iou@5"):
            assert 0.0 <= row.metrics[name] <= 1.0
    assert result.aggregates["span_recall@5"] > 0.2


def test_second_run_embeds_nothing_and_k_change_reuses_the_index(cranfield) -> None:
    config = load_config(ROOT / "configs" / "dense.toml")
    first = run_experiment(config, cranfield, query_ids=FIRST_QUERIES)
    again = run_experiment(config, cranfield, query_ids=FIRST_QUERIES)
    assert again.embedding_stats["misses"] == 0
    assert again.aggregates == first.aggregates
    fewer = replace_path(config, "retrieval.k", 20)
    assert build_pipeline(fewer, cranfield).retriever is build_pipeline(config, cranfield).retriever
    assert run_experiment(fewer, cranfield, query_ids=FIRST_QUERIES).embedding_stats["misses"] == 0


def test_unknown_query_ids_are_named(cranfield) -> None:
    with pytest.raises(ValueError, match=r"unknown query ids \['nope'\]"):
        run_experiment(load_config(ROOT / "configs" / "bm25.toml"), cranfield, query_ids=["nope"])


def test_cli_evaluate_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workbench", "evaluate", "--dataset", "cranfield", "--config", "configs/bm25.toml", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    assert "1398 documents, 225 evaluated queries" in out.stdout
    header, row = out.stdout.splitlines()[1:3]
    assert header.split()[:2] == ["config", "ndcg@10"] and row.split()[0] == "bm25"
    bad = subprocess.run(
        [sys.executable, "-m", "workbench", "evaluate", "--config", "configs/nope.toml"], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and "configs/nope.toml' does not exist" in bad.stderr


def test_answer_routes_once_and_cites_retrieved_chunks(cranfield) -> None:
    config = replace_path(load_config(ROOT / "configs" / "bm25.toml"), "generation.kind", "extractive")
    pipeline = build_pipeline(config, cranfield)
    response = pipeline.answer(cranfield.queries["1"])
    assert pipeline.router is pipeline.router  # built once, not per query
    assert response.model == config.generation.model and response.attempts == (response.answer,)
    shown = {h.chunk.id for h in response.hits[: config.generation.context_chunks]}
    assert response.answer.citations and set(response.answer.citations) <= shown
    assert {"route", "retrieve", "generate"} <= set(response.stage_latency_s)


def test_cascade_keeps_the_cheapest_grounded_answer(cranfield) -> None:
    config = replace_path(load_config(ROOT / "configs" / "bm25.toml"), "routing.kind", "cascade")
    config = replace_path(config, "routing.threshold", 0.5)
    pipeline = build_pipeline(config, cranfield)
    response = pipeline.answer(cranfield.queries["2"])
    # extractive answers quote the context, so they are grounded and the first tier suffices
    assert pipeline.router is None
    assert response.model == config.routing.tiers[0] and len(response.attempts) == 1


def test_query_embedding_is_its_own_stage_and_says_when_it_was_cached(embedder) -> None:
    import uuid

    from workbench.datasets import Dataset
    from workbench.types import Document

    docs = tuple(Document(id=f"d{i}", text=t) for i, t in enumerate(
        ["Laminar flow over a flat plate.", "Shock waves in supersonic nozzles.", "Heat transfer in slabs."]))
    dataset = Dataset(name="tiny", documents=docs, queries={"q": "supersonic shock"})
    question = f"shock waves at mach {uuid.uuid4().hex[:8]}"  # never embedded before
    base = PipelineConfig()
    for kind in ("dense", "hybrid"):
        config = replace_path(replace_path(base, "retrieval.kind", kind), "retrieval.k", 2)
        pipeline = build_pipeline(config, dataset, embedder=embedder)
        hits, stages = pipeline.search(question)
        # dense computes the new query's vector; hybrid, after it, reads it from the cache and says so
        assert set(stages) == ({"embed", "retrieve"} if kind == "dense" else {"embed_cached", "retrieve"})
        assert len(hits) == 2 and all(v >= 0 for v in stages.values())
        looked_up = embedder.stats.hits + embedder.stats.misses
        assert set(pipeline.search(question)[1]) == {"embed_cached", "retrieve"}
        assert embedder.stats.hits + embedder.stats.misses == looked_up + 1  # the retriever used the stage's vector
    bm25 = build_pipeline(replace_path(base, "retrieval.kind", "bm25"), dataset, embedder=embedder)
    assert set(bm25.search(question)[1]) == {"retrieve"}
