"""Retrievers: BM25 against rank_bm25, filters before top-k, FAISS against numpy, fusion, persistence."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from workbench.config import ConfigError, EmbeddingConfig, RetrievalConfig
from workbench.embedding import Embedder
from workbench.retrieval import (
    FUSIONS,
    RETRIEVERS,
    BM25Retriever,
    Bm25Index,
    Bm25Tokenizer,
    DenseRetriever,
    HybridRetriever,
    build_retriever,
    compile_filter,
    reciprocal_rank_fusion,
    top_k,
    weighted_score_fusion,
)
from workbench.types import Chunk, Hit


def make_chunk(cid: str, text: str, **metadata) -> Chunk:
    return Chunk(id=cid, doc_id=cid, text=text, start=0, end=len(text), metadata=metadata)


@pytest.fixture(scope="module")
def titles(cranfield) -> list[Chunk]:
    """80 real Cranfield titles (short, so cheap to embed) with metadata to filter on."""
    docs = cranfield.documents[:80]
    return [
        make_chunk(d.id, d.metadata["title"], year=1950 + i % 20, group=("a", "b", "c")[i % 3],
                   published=dt.date(1960, 1, 1) + dt.timedelta(days=30 * i))
        for i, d in enumerate(docs)
    ]


# ---------------------------------------------------------------------------------------- BM25


def test_bm25_scores_and_rankings_equal_rank_bm25_on_cranfield(cranfield):
    tokenizer = Bm25Tokenizer()
    corpus = [tokenizer(d.text) for d in cranfield.documents]
    ours, reference = Bm25Index(corpus), BM25Okapi(corpus)
    assert len(cranfield.queries) == 225
    for query in cranfield.queries.values():
        terms = tokenizer(query)
        expected = reference.get_scores(terms)
        got = ours.scores(terms)
        assert np.allclose(got, expected, rtol=1e-12, atol=1e-12)
        best, best_scores = ours.top_k(terms, 100)
        assert np.array_equal(best, np.argsort(-expected, kind="stable")[:100])
        assert np.array_equal(best_scores, expected[best])


def test_bm25_negative_idf_is_floored_like_rank_bm25():
    # "the" is in 3 of 4 documents: idf = log(1.5 / 3.5) < 0, floored to epsilon * mean idf.
    corpus = [["the", "wing"], ["the", "flow"], ["the", "heat"], ["shock"]]
    query = ["the", "wing", "the"]
    np.testing.assert_array_equal(Bm25Index(corpus).scores(query), BM25Okapi(corpus).get_scores(query))
    assert Bm25Index(corpus, epsilon=0.25).idf[0] > 0


def test_tokenizer_lowercases_drops_stopwords_and_stems():
    assert Bm25Tokenizer()("The Flow OF a jet, in 2 wings") == ["flow", "jet", "2", "wings"]
    assert Bm25Tokenizer(stemmer="english")("running wings flows") == ["run", "wing", "flow"]
    assert Bm25Tokenizer(lowercase=False, stopwords=frozenset())("The a Jet") == ["The", "a", "Jet"]
    assert Bm25Tokenizer(token_pattern=r"(?u)\b\w\w+\b")("a jet in 2 wings") == ["jet", "wings"]
    config = RetrievalConfig(stemmer="english", stopwords="none", token_pattern=r"\w+")
    assert Bm25Tokenizer.from_config(config)("of a jets") == ["of", "a", "jet"]


def test_tokenizer_rejects_unknown_stemmer_and_bad_pattern():
    with pytest.raises(ConfigError, match="klingon"):
        Bm25Tokenizer(stemmer="klingon")
    with pytest.raises(ConfigError, match="token_pattern"):
        RetrievalConfig(token_pattern="(")


def test_top_k_breaks_ties_by_index_and_respects_mask():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 0.0])
    assert top_k(scores, 2).tolist() == [1, 2]
    assert top_k(scores, 4).tolist() == [1, 2, 4, 3]
    assert top_k(scores, 10).tolist() == [1, 2, 4, 3, 0, 5]
    mask = np.array([True, False, False, True, False, True])
    assert top_k(scores, 2, mask).tolist() == [3, 0]


def test_bm25_retriever_hits_are_ranked_and_k_is_capped():
    chunks = [make_chunk("1", "supersonic wing flutter"), make_chunk("2", "wing"), make_chunk("3", "heat transfer")]
    hits = BM25Retriever(chunks).retrieve("wing flutter", 10)
    assert [h.chunk.id for h in hits] == ["1", "2", "3"]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score > hits[1].score > hits[2].score == 0.0


# ------------------------------------------------------------------------------------- filters


def test_filter_operators():
    meta = {"year": 1965, "group": "a", "published": "1966-03-01", "stamp": "1966-03-01T12:00:00+02:00"}
    cases = {
        "equality": ({"group": "a"}, {"group": "b"}),
        "in": ({"group": {"in": ["b", "a"]}}, {"group": {"in": ["b", "c"]}}),
        "gte": ({"year": {"gte": 1965}}, {"year": {"gte": 1966}}),
        "gt": ({"year": {"gt": 1964}}, {"year": {"gt": 1965}}),
        "lte": ({"year": {"lte": 1965}}, {"year": {"lte": 1964.5}}),
        "lt": ({"year": {"lt": 1966}}, {"year": {"lt": 1965}}),
        "date string": ({"published": {"gte": "1966-03-01"}}, {"published": {"gt": "1966-03-01"}}),
        "date object": ({"published": {"lt": dt.date(1966, 3, 2)}}, {"published": {"lt": dt.date(1966, 3, 1)}}),
        "date range": ({"published": {"gte": "1966-01-01", "lte": "1966-12-31"}}, {"published": {"gte": "1967-01-01", "lte": "1967-12-31"}}),
        "datetime vs day": ({"stamp": {"lte": "1966-03-01"}}, {"stamp": {"lt": "1966-03-01"}}),
        "datetime bound": ({"stamp": {"lt": "1966-03-01T11:00:00+00:00"}}, {"stamp": {"lt": "1966-03-01T10:00:00+00:00"}}),
        "AND of fields": ({"group": "a", "year": {"gt": 1960}}, {"group": "a", "year": {"gt": 1970}}),
        "missing field": ({}, {"colour": "red"}),
    }
    for name, (passing, failing) in cases.items():
        assert compile_filter(passing)(meta), name
        assert not compile_filter(failing)(meta), name
    assert not compile_filter({"year": {"gte": 1960}})({"year": "1965"}), "a string is not a number"
    assert not compile_filter({"published": {"gte": "1960-01-01"}})({"published": "soon"})
    assert compile_filter({"published": {"gte": dt.date(1960, 1, 1)}})({"published": dt.datetime(1966, 3, 1, 9)})


def test_filter_errors_name_the_value_and_the_fix():
    with pytest.raises(ValueError, match=r"unknown operator 'between'.*\['in', 'gte', 'gt', 'lte', 'lt'\]"):
        compile_filter({"year": {"between": [1, 2]}})
    with pytest.raises(ValueError, match=r"'in' needs a list.*\{'in': \['a'\]\}"):
        compile_filter({"group": {"in": "a"}})
    with pytest.raises(ValueError, match="ISO date string"):
        compile_filter({"published": {"gte": "last year"}})
    with pytest.raises(ValueError, match="empty operator table"):
        compile_filter({"year": {}})
    with pytest.raises(ValueError, match="must be a mapping"):
        compile_filter([("year", 1)])  # type: ignore[arg-type]


def filtered_corpus() -> list[Chunk]:
    """Three strong matches from 1950 and seven weak or non-matching chunks from 1970."""
    strong = [make_chunk(f"s{i}", f"supersonic wing flutter test {i}", year=1950) for i in range(3)]
    weak = [make_chunk(f"w{i}", text, year=1970) for i, text in enumerate(
        ["wing", "heat", "boundary layer", "shock", "slender bodies", "jet noise", "creep buckling"])]
    return strong + weak


def test_bm25_filter_applies_before_top_k():
    retriever = BM25Retriever(filtered_corpus())
    unfiltered = retriever.retrieve("supersonic wing flutter", 3)
    assert all(h.chunk.metadata["year"] == 1950 for h in unfiltered)  # post-filtering would leave nothing
    hits = retriever.retrieve("supersonic wing flutter", 3, where={"year": {"gte": 1960}})
    assert len(hits) == 3
    assert hits[0].chunk.id == "w0"  # the one filtered chunk that matches a term comes first
    assert all(h.chunk.metadata["year"] == 1970 for h in hits)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert retriever.retrieve("wing", 10, where={"year": {"in": [1970]}})[-1].rank == 7
    assert retriever.retrieve("wing", 10, where={"year": 1999}) == []


def test_dense_filter_applies_before_top_k_flat_and_hnsw(embedder):
    for index in ("flat", "hnsw"):
        retriever = DenseRetriever.build(filtered_corpus(), embedder, index=index, progress=False)
        assert all(h.chunk.metadata["year"] == 1950 for h in retriever.retrieve("supersonic wing flutter", 3))
        hits = retriever.retrieve("supersonic wing flutter", 3, where={"year": {"gte": 1960}})
        assert len(hits) == 3, index
        assert all(h.chunk.metadata["year"] == 1970 for h in hits), index
        assert [h.rank for h in hits] == [1, 2, 3]


def test_hybrid_filter_applies_on_both_sides(embedder):
    retriever = build_retriever(RetrievalConfig(kind="hybrid", fusion_depth=2), filtered_corpus(), embedder)
    hits = retriever.retrieve("supersonic wing flutter", 4, where={"year": 1970})
    assert len(hits) == 4
    assert all(h.chunk.metadata["year"] == 1970 for h in hits)


# --------------------------------------------------------------------------------------- dense


def test_dense_exact_search_equals_brute_force_numpy(titles, embedder):
    retriever = DenseRetriever.build(titles, embedder, progress=False)
    vectors = embedder.embed([c.text for c in titles])
    queries = ["pressure distribution on a cone at supersonic speed", "heat transfer in boundary layers"]
    for query, hits in zip(queries, retriever.retrieve_many(queries, 10)):
        expected = vectors @ embedder.embed_query(query)
        order = np.argsort(-expected, kind="stable")[:10]
        assert [h.chunk.id for h in hits] == [titles[i].id for i in order]
        np.testing.assert_allclose([h.score for h in hits], expected[order], rtol=1e-5, atol=1e-5)
        assert [h.rank for h in hits] == list(range(1, 11))
    filtered = retriever.retrieve(queries[0], 5, where={"group": "b"})
    allowed = [i for i, c in enumerate(titles) if c.metadata["group"] == "b"]
    expected = vectors[allowed] @ embedder.embed_query(queries[0])
    assert [h.chunk.id for h in filtered] == [titles[allowed[i]].id for i in np.argsort(-expected)[:5]]
    assert len(retriever.retrieve(queries[0], 500)) == len(titles)


def test_hnsw_recall_against_flat(embedder):
    # 3,000 clustered unit vectors: big enough that HNSW is approximate, small enough to be quick.
    from workbench.vectorstores import FaissIndex, IndexSpec

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 48))
    data = (centres[rng.integers(0, 30, 3000)] + 0.6 * rng.normal(size=(3000, 48))).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    chunks = [make_chunk(str(i), f"vector {i}", shard=i % 50) for i in range(len(data))]

    def retriever(index: str) -> DenseRetriever:
        built = FaissIndex(IndexSpec(dimension=48, index=index, hnsw_m=16, hnsw_ef_search=64))
        built.upsert([c.id for c in chunks], data, [c.metadata for c in chunks], [c.doc_id for c in chunks])
        return DenseRetriever(chunks, built, embedder, model_id=embedder.model_id)

    flat = retriever("flat")
    hnsw = retriever("hnsw")
    queries = data[rng.integers(0, 3000, 50)] + 0.1 * rng.normal(size=(50, 48)).astype(np.float32)
    exact, approx = flat.search(queries, 10), hnsw.search(queries, 10)
    recall = np.mean([len({h.chunk.id for h in a} & {h.chunk.id for h in e}) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95
    # a filter keeping 2% of the vectors: HNSW still returns k hits, all allowed, exactly ranked
    where = {"shard": {"in": [7]}}
    tight_exact, tight_approx = flat.search(queries[:5], 10, where), hnsw.search(queries[:5], 10, where)
    for a, e in zip(tight_approx, tight_exact):
        assert len(a) == 10 and all(h.chunk.metadata["shard"] == 7 for h in a)
        assert len({h.chunk.id for h in a} & {h.chunk.id for h in e}) >= 9


def test_dense_save_load_roundtrip_and_checksums(titles, embedder, tmp_path):
    retriever = DenseRetriever.build(titles, embedder, index="hnsw", hnsw_m=8, progress=False)
    retriever.save(tmp_path / "idx")
    loaded = DenseRetriever.load(tmp_path / "idx", embedder)
    assert loaded.chunks == retriever.chunks  # metadata dates survive the JSON round trip
    assert isinstance(loaded.chunks[0].metadata["published"], dt.date)
    query = "transition of a laminar boundary layer"
    assert [(h.chunk.id, round(h.score, 6)) for h in loaded.retrieve(query, 5)] == [
        (h.chunk.id, round(h.score, 6)) for h in retriever.retrieve(query, 5)
    ]
    (tmp_path / "idx" / "chunks.faiss.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="checksum.*rebuild the index"):
        DenseRetriever.load(tmp_path / "idx", embedder)
    (tmp_path / "idx" / "manifest.json").write_text("{}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="manifest.json is corrupt.*rebuild the index"):
        DenseRetriever.load(tmp_path / "idx", embedder)
    with pytest.raises(ValueError, match="no saved dense index"):
        DenseRetriever.load(tmp_path / "nowhere", embedder)


def test_embedding_model_mismatch_names_both_models_and_the_fix(titles, embedder, tmp_path):
    retriever = DenseRetriever.build(titles[:5], embedder, progress=False)
    retriever.save(tmp_path / "idx")
    other = Embedder(EmbeddingConfig(model="BAAI/bge-small-en-v1.5"))  # never loaded: the id is enough
    message = r"embedding model mismatch.*all-MiniLM-L6-v2.*bge-small-en-v1\.5.*rebuild the index.*embedding\.model"
    with pytest.raises(ConfigError, match=message):
        DenseRetriever.load(tmp_path / "idx", other)
    with pytest.raises(ConfigError, match=message):
        DenseRetriever(retriever.chunks, retriever.index, other, model_id=retriever.model_id)
    with pytest.raises(ConfigError, match="dimension 8 .* has 384"):
        retriever.search(np.ones((1, 8), dtype=np.float32), 3)


# -------------------------------------------------------------------------------------- fusion


def hits_of(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(chunk=make_chunk(cid, cid), score=score, rank=r) for r, (cid, score) in enumerate(pairs, 1)]


def test_reciprocal_rank_fusion_hand_computed():
    dense = hits_of(("a", 0.9), ("b", 0.8), ("c", 0.7))
    sparse = hits_of(("c", 12.0), ("d", 5.0), ("a", 1.0))
    fused = reciprocal_rank_fusion(dense, sparse, rrf_k=60)
    expected = {"a": 1 / 61 + 1 / 63, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 62}
    assert [h.chunk.id for h in fused] == ["a", "c", "b", "d"]  # ties: best rank (1 each), then id
    assert [h.chunk.id for h in reciprocal_rank_fusion(sparse, dense, rrf_k=60)] == ["a", "c", "b", "d"]
    assert [h.score for h in fused] == pytest.approx([expected[h.chunk.id] for h in fused])
    assert [h.rank for h in fused] == [1, 2, 3, 4]
    assert [h.chunk.id for h in reciprocal_rank_fusion(dense, [], rrf_k=1)] == ["a", "b", "c"]


def test_weighted_score_fusion_hand_computed():
    dense = hits_of(("a", 0.9), ("b", 0.7), ("c", 0.5))  # normalised 1, 0.5, 0
    sparse = hits_of(("c", 10.0), ("d", 6.0), ("a", 2.0))  # normalised 1, 0.5, 0
    fused = weighted_score_fusion(dense, sparse, dense_weight=0.75)
    expected = {"a": 0.75, "b": 0.375, "c": 0.25, "d": 0.125}
    assert [h.chunk.id for h in fused] == ["a", "b", "c", "d"]
    assert [h.score for h in fused] == pytest.approx([expected[h.chunk.id] for h in fused])
    flat = weighted_score_fusion(hits_of(("x", 3.0), ("y", 3.0)), [], dense_weight=0.5)
    assert [h.score for h in flat] == [0.5, 0.5]
    with pytest.raises(ValueError, match="dense_weight=1.5"):
        weighted_score_fusion(dense, sparse, dense_weight=1.5)


@given(st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10),
       st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10),
       st.integers(1, 80))
def test_fusion_order_never_depends_on_which_list_comes_first(first, second, rrf_k):
    a = hits_of(*[(cid, 1.0 - i / 20) for i, cid in enumerate(first)])
    b = hits_of(*[(cid, 9.0 - i) for i, cid in enumerate(second)])
    ids = lambda hits: [(h.chunk.id, h.score) for h in hits]  # noqa: E731
    assert ids(reciprocal_rank_fusion(a, b, rrf_k=rrf_k)) == ids(reciprocal_rank_fusion(b, a, rrf_k=rrf_k))
    same = hits_of(*[(cid, 1.0 - i / 20) for i, cid in enumerate(second)])
    assert ids(weighted_score_fusion(a, same, dense_weight=0.5)) == ids(weighted_score_fusion(same, a, dense_weight=0.5))


def test_fusion_table_passes_the_config_parameters():
    assert sorted(FUSIONS) == ["rrf", "weighted"]
    config = RetrievalConfig(fusion="weighted", dense_weight=1.0)
    dense, sparse = hits_of(("a", 1.0), ("b", 0.0)), hits_of(("b", 9.0), ("a", 1.0))
    assert [h.chunk.id for h in FUSIONS["weighted"](dense, sparse, config)] == ["a", "b"]


def test_hybrid_returns_k_fused_hits(titles, embedder):
    config = RetrievalConfig(kind="hybrid", fusion_depth=5)
    retriever = build_retriever(config, titles, embedder)
    assert isinstance(retriever, HybridRetriever)
    query = "supersonic flow past a cone"
    hits = retriever.retrieve(query, 8)  # k above fusion_depth: each side is asked for k
    assert len(hits) == 8 and [h.rank for h in hits] == list(range(1, 9))
    dense, sparse = retriever.dense.retrieve(query, 8), retriever.sparse.retrieve(query, 8)
    assert [h.chunk.id for h in hits] == [h.chunk.id for h in reciprocal_rank_fusion(dense, sparse, rrf_k=60)[:8]]


# ---------------------------------------------------------------------------------- bad input


def test_bad_input_errors(titles, embedder):
    retriever = BM25Retriever(titles)
    for k in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            retriever.retrieve("wing", k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no chunks.*at least one non-empty document"):
        build_retriever(RetrievalConfig(kind="bm25"), [])
    for kind in ("dense", "hybrid"):
        with pytest.raises(ValueError, match=f"retrieval.kind='{kind}' needs an embedder.*load_embedder"):
            build_retriever(RetrievalConfig(kind=kind), titles)
    with pytest.raises(ValueError, match=r"chunk ids must be unique.*\['x'\]"):
        BM25Retriever([make_chunk("x", "a wing"), make_chunk("x", "a body")])
    with pytest.raises(ValueError, match="no document has a single BM25 term.*retrieval.stopwords"):
        BM25Retriever([make_chunk("x", "the of and")])
    config = RetrievalConfig()
    object.__setattr__(config, "kind", "colbert")  # past the config's own check, as a new kind without a factory would be
    with pytest.raises(ValueError, match=r"unknown retriever 'colbert'; choose one of \['bm25', 'dense', 'hybrid'\]"):
        build_retriever(config, titles)
    assert sorted(RETRIEVERS) == ["bm25", "dense", "hybrid"]
    with pytest.raises(ValueError, match=r"faiss has no 'ivf' index; choose one of \['flat', 'hnsw'\]"):
        DenseRetriever.build(titles, embedder, index="ivf")


# ------------------------------------------------------------------ token patterns never hang


def test_a_backtracking_pattern_the_probes_miss_fails_tokenisation_instead_of_hanging():
    from workbench.config import ConfigError
    from workbench.retrieval.bm25 import TOKENIZE_TIMEOUT_S

    pattern = r"(?:\d|\d\d)+$"  # fine on the config's probe strings, exponential on a run of digits
    tokenizer = Bm25Tokenizer.from_config(RetrievalConfig(kind="bm25", token_pattern=pattern))
    assert tokenizer("a 12") == ["12"]
    with pytest.raises(ConfigError, match=rf"took over {TOKENIZE_TIMEOUT_S} s on a 41-character text.*token_pattern"):
        tokenizer("1" * 40 + "x")
    with pytest.raises(ConfigError, match="matches the empty string"):
        Bm25Tokenizer(token_pattern=r"\w*")


def test_retrievers_come_from_the_registry_with_the_uniform_builder(titles):
    from workbench.registry import REGISTRIES
    from workbench.resources import Resources

    assert RETRIEVERS is REGISTRIES["retrieval.kind"] and RETRIEVERS["bm25"] is BM25Retriever
    built = RETRIEVERS["bm25"].from_config(RetrievalConfig(kind="bm25"), Resources(chunks=titles))
    direct = BM25Retriever(titles)
    query = "supersonic flow past a cone"
    assert [h.chunk.id for h in built.retrieve_many([query], 5)[0]] == [h.chunk.id for h in direct.retrieve(query, 5)]
