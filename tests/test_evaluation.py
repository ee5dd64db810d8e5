"""Reranker evaluation and fine-tuning (workbench.evaluation), on hand-made candidates and a toy dataset.

The fine-tuning tests train the packaged MiniLM with sentence-transformers' CrossEncoderTrainer
for a few steps: they check splits, pair counts, steps, the report and that the model learns the
label direction, not ranking quality.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_reranking import PASSAGES, check_ranked, hits_of

from workbench.config import (
    ChunkingConfig,
    ConfigError,
    PipelineConfig,
    RetrievalConfig,
)
from workbench.datasets import Dataset
from workbench.evaluation import (
    Candidates,
    TrainConfig,
    evaluate_reranker,
    retrieve_candidates,
    train_reranker,
)
from workbench.reranking import CrossEncoderReranker, make_reranker
from workbench.types import Chunk, Document, Hit

# --- evaluation ----------------------------------------------------------------------------------


class ReverseReranker:
    """A real (if silly) reranker: the input order reversed."""

    def prepare(self, query):
        """No query-only work."""

    def rerank(self, query, hits, k):
        return [dataclasses.replace(h, score=-i, rank=i + 1) for i, h in enumerate(list(hits)[::-1][:k])]


def small_candidates():
    """Two queries over four one-chunk documents; the relevant document is ranked last."""
    chunks = tuple(Chunk(id=f"d{i}", doc_id=f"d{i}", text=f"text {i}", start=0, end=6) for i in range(4))
    hits = tuple(Hit(chunk=c, score=4.0 - i, rank=i + 1) for i, c in enumerate(chunks))
    return Candidates(
        dataset="toy", unit="document", depth=4, chunks=chunks, queries={"q1": "one", "q2": "two"},
        hits={"q1": hits, "q2": hits}, relevance={"q1": {"d3": 2}, "q2": {"d0": 1}}, retrieval_ms=0.0,
    )


def test_evaluate_counts_wins_losses_and_metrics_before_and_after():
    ev = evaluate_reranker(ReverseReranker(), small_candidates(), depths=(2, 4), k=1, name="reverse")
    n2, n4 = ev.summaries
    # N=2: q1's relevant d3 is out of reach, q2 loses d0 -> one loss, one tie.
    assert (n2.wins, n2.losses, n2.ties) == (0, 1, 1)
    assert (n2.ndcg_before, n2.ndcg_after) == (0.5, 0.0)
    assert n2.verdict == "hurts (not significant)" and "too few" in n2.note
    # N=4: reversing brings d3 to the top for q1 and drops d0 for q2.
    assert (n4.wins, n4.losses) == (1, 1)
    assert (n4.precision_after, n4.recall_after, n4.candidate_recall) == (0.5, 0.5, 1.0)
    assert n4.p_value == 1.0 and n4.test.endswith("exact")
    frame = ev.to_frame()
    assert list(frame["depth"]) == [2, 4] and set(frame["reranker"]) == {"reverse"}
    assert len(ev.per_query_frame()) == 4


class PreparingReverse(ReverseReranker):
    """Reverses, and records which queries were prepared and which reranked."""

    def __init__(self):
        self.prepared, self.reranked = [], []

    def prepare(self, query):
        self.prepared.append(query)

    def rerank(self, query, hits, k):
        self.reranked.append(query)
        return super().rerank(query, hits, k)


def test_evaluate_prepares_each_query_once_for_all_depths():
    reranker = PreparingReverse()
    ev = evaluate_reranker(reranker, small_candidates(), depths=(2, 4), k=1)
    assert reranker.prepared == ["one", "two"]
    assert reranker.reranked == ["one", "one", "one", "two", "two"]  # an untimed warm-up first
    plain = evaluate_reranker(ReverseReranker(), small_candidates(), depths=(2, 4), k=1)
    strip = lambda e: [dataclasses.replace(r, rerank_ms=0.0) for r in e.rows]  # noqa: E731
    assert strip(ev) == strip(plain)
    assert [r.depth for r in ev.rows] == [2, 2, 4, 4]


def test_evaluate_rejects_bad_depths():
    c = small_candidates()
    with pytest.raises(ValueError, match="smaller than k=3"):
        evaluate_reranker(ReverseReranker(), c, depths=(2,), k=3)
    with pytest.raises(ValueError, match="deeper than the 4 candidates"):
        evaluate_reranker(ReverseReranker(), c, depths=(10,), k=1)
    with pytest.raises(ValueError, match="no candidates"):
        evaluate_reranker(ReverseReranker(), c, depths=(2,), k=1, query_ids=["q9"])


@pytest.fixture(scope="module")
def toy_dataset():
    docs = tuple(Document(id=f"d{i}", text=t) for i, t in enumerate(PASSAGES))
    queries = {
        "1": "turbulent boundary layer on a plate",
        "2": "shock waves in supersonic flow",
        "3": "heat transfer in hypersonic flight",
        "4": "buckling of cylindrical shells",
    }
    qrels = {"1": {"d0": 2}, "2": {"d1": 1}, "3": {"d2": 1}, "4": {"d4": 1}}
    return Dataset(name="toy", documents=docs, queries=queries, qrels=qrels)


BM25_PIPELINE = PipelineConfig(chunking=ChunkingConfig(method="none"), retrieval=RetrievalConfig(kind="bm25"))


def test_retrieve_candidates_judges_documents_and_rejects_too_deep(toy_dataset):
    c = retrieve_candidates(BM25_PIPELINE, toy_dataset, depth=5)
    assert c.unit == "document" and len(c.chunks) == 5 and set(c.hits) == {"1", "2", "3", "4"}
    assert c.hits["2"][0].chunk.doc_id == "d1"
    with pytest.raises(ValueError, match="larger than the corpus"):
        retrieve_candidates(BM25_PIPELINE, toy_dataset, depth=6)


def test_span_sets_are_judged_per_chunk(chunking_set):
    from workbench.evaluation.reranker_evaluation import chunk_relevance

    doc = chunking_set.documents[0]
    half = len(doc.text) // 2
    chunks = [
        Chunk(id="a", doc_id=doc.id, text=doc.text[:half], start=0, end=half),
        Chunk(id="b", doc_id=doc.id, text=doc.text[half:], start=half, end=len(doc.text)),
    ]
    qid = next(q for q, spans in chunking_set.spans.items() if spans[0].doc_id == doc.id)
    rel = chunk_relevance(chunking_set, chunks, [qid])[qid]
    expected = {c.id for c in chunks for s in chunking_set.spans[qid] if c.start < s.end and s.start < c.end}
    assert set(rel) == expected and expected


# --- fine-tuning ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_reranker_saves_a_loadable_cross_encoder_and_reports_heldout(toy_dataset, tmp_path):
    candidates = retrieve_candidates(BM25_PIPELINE, toy_dataset, depth=5)
    config = TrainConfig(heldout=0.25, validation=0.25, depth=5, positives=2, negatives=2, random_negatives=1,
                         max_length=64, batch_size=4, input_weights=(0.0, 0.5))
    report = train_reranker(toy_dataset, tmp_path / "model", candidates=candidates, config=config)
    assert (len(report.heldout_queries), len(report.validation_queries), len(report.train_queries)) == (1, 1, 2)
    splits = [set(report.heldout_queries), set(report.validation_queries), set(report.train_queries)]
    assert set.union(*splits) == {"1", "2", "3", "4"} and sum(map(len, splits)) == 4
    assert report.positives == 2 and report.negatives == 6  # per query: 1 relevant, 2 hard + 1 random
    assert report.steps == 2 and len(report.loss_curve) == 2  # 8 pairs, 4 a step
    assert set(report.validation_ndcg) == {0.0, 0.5} and report.input_weight in (0.0, 0.5)
    assert report.validation_ndcg[report.input_weight] == max(report.validation_ndcg.values())
    s = report.evaluation.summaries[0]
    assert s.depth == 5 and s.queries == 1 and report.beats_input == (s.ndcg_after > s.ndcg_before)
    assert report.raw_evaluation.summaries[0].queries == 1
    assert "held-out (1 queries)" in report.summary()
    served = report.reranking_config(k=2, candidates=5)
    assert (served.kind, served.model, served.max_length, served.input_weight) == (
        "trained", report.model_dir, 64, report.input_weight
    )
    check_ranked(make_reranker(served).rerank("shock waves", hits_of(PASSAGES), 2), 2)


@pytest.mark.slow
def test_training_learns_the_label_direction(toy_dataset, tmp_path):
    # The sanity check a sign or label bug fails: after training, the training queries' own
    # relevant passages must outscore their negatives.
    candidates = retrieve_candidates(BM25_PIPELINE, toy_dataset, depth=5)
    config = TrainConfig(heldout=0.25, validation=0.25, depth=5, positives=1, negatives=4, random_negatives=0,
                         max_length=48, batch_size=10, epochs=12, learning_rate=1e-4, input_weights=(0.0,))
    report = train_reranker(toy_dataset, tmp_path / "model", candidates=candidates, config=config)
    assert len(report.loss_curve) == 10 and report.loss_curve[-1] < report.loss_curve[0]
    reranker = CrossEncoderReranker(report.model_dir, max_length=48)
    for qid in report.train_queries:
        (relevant,) = toy_dataset.qrels[qid]
        scores = reranker.score(toy_dataset.queries[qid], PASSAGES)
        assert int(np.argmax(scores)) == int(relevant[1:]), (qid, scores)


def test_train_reranker_needs_three_judged_queries(toy_dataset, tmp_path):
    two = dataclasses.replace(
        toy_dataset, queries={q: toy_dataset.queries[q] for q in "12"}, qrels={"1": {"d0": 1}, "2": {"d1": 1}}
    )
    candidates = retrieve_candidates(BM25_PIPELINE, two, depth=5)
    with pytest.raises(ValueError, match="at least three"):
        train_reranker(two, tmp_path / "m", candidates=candidates)


def test_train_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="validation=1.0"):
        TrainConfig(validation=1.0)
    with pytest.raises(ConfigError, match="input_weights"):
        TrainConfig(input_weights=(1.0,))
