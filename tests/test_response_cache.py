"""The response cache on real SQLite files, with the real MiniLM embedder for semantic hits."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from workbench.response_cache import ResponseCache, normalize_query, threshold_sweep
from workbench.types import Answer, Usage


def answer(text: str, cost: float = 0.002) -> Answer:
    usage = Usage(model="claude-haiku-4-5", input_tokens=100, output_tokens=20, cost_usd=cost, counted=True,
                  latency_s=1.5, time_to_first_token_s=0.4)
    return Answer(text=text, citations=("doc:1",), usage=usage)


def test_exact_hits_survive_reopening_and_scopes_stay_apart(tmp_path):
    path = tmp_path / "responses.sqlite"
    with ResponseCache(path, scope="config-a") as cache:
        assert cache.get("How high is Everest?") is None
        cache.put("How high is Everest?", answer("8,849 m [1]"))
        hit = cache.get("  how HIGH is   everest? ")
        assert hit is not None and hit.kind == "exact" and hit.similarity == 1.0
        assert hit.answer == answer("8,849 m [1]")  # text, citations and usage round-trip
        assert hit.matched_query == "How high is Everest?"
        assert cache.get("How high is K2?") is None
        assert cache.stats.lookups == 3 and cache.stats.exact_hits == 1 and cache.stats.hit_rate == pytest.approx(1 / 3)
    with ResponseCache(path, scope="config-a") as again:
        assert again.get("How high is Everest?").answer.text == "8,849 m [1]"
        again.put("How high is Everest?", answer("8,848.86 m [1]"))  # replaces, atomically
        assert again.get("How high is Everest?").answer.text == "8,848.86 m [1]" and len(again) == 1
    with ResponseCache(path, scope="config-b") as other:
        assert other.get("How high is Everest?") is None and len(other) == 0
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert rows == 1


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path):
    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with ResponseCache(path) as cache:
        cache.put("q", answer("a"))
        assert cache.get("q") is not None
    assert len(list(tmp_path.glob("responses.sqlite.corrupt-*"))) == 1


def test_semantic_needs_an_embedder_and_a_sane_threshold(tmp_path):
    with pytest.raises(ValueError, match="needs an embedder"):
        ResponseCache(tmp_path / "c.sqlite", threshold=0.9)
    with pytest.raises(ValueError, match=r"threshold=1.5"):
        ResponseCache(tmp_path / "c.sqlite", threshold=1.5, embedder=object())  # type: ignore[arg-type]


@pytest.mark.slow  # loads MiniLM when run alone
def test_semantic_hits_paraphrases_and_logs_what_it_served(tmp_path, embedder):
    with ResponseCache(tmp_path / "c.sqlite", embedder=embedder, threshold=0.8) as cache:
        cache.put("What is the height of Mount Everest?", answer("8,849 m [1]"))
        cache.put("Who created the Python programming language?", answer("Guido van Rossum [1]"))
        hit = cache.get("How tall is Mount Everest?")
        assert hit is not None and hit.kind == "semantic" and 0.8 <= hit.similarity < 1.0
        assert hit.answer.text == "8,849 m [1]"
        assert cache.get("What is the capital of France?") is None
        served = cache.served
        assert [(s.query, s.matched_query, s.kind) for s in served] == [
            ("How tall is Mount Everest?", "What is the height of Mount Everest?", "semantic")
        ]
        assert cache.stats.semantic_hits == 1 and cache.stats.lookups == 2
    # a looser threshold serves the wrong answer: exactly what the served log is for
    with ResponseCache(tmp_path / "c.sqlite", embedder=embedder, threshold=0.1) as loose:
        wrong = loose.get("Who wrote the Linux kernel?")
        assert wrong is not None and wrong.matched_query == "Who created the Python programming language?"


def test_threshold_sweep_counts_hits_and_wrong_answers_by_hand():
    # 2-d vectors with hand-checkable cosines: q1 and q2 agree (cos 0.8), q3 is near q2 (cos 0.96)
    # but asks something else, q4 repeats q1 exactly.
    vectors = {"q1": [1.0, 0.0], "q2": [0.8, 0.6], "q3": [0.6, 0.8], "Q1 ": [1.0, 0.0]}
    sweep = threshold_sweep(
        ["q1", "q2", "q3", "Q1 "], ["a", "a", "b", "a"], [0.5, 0.9, 0.99],
        embed=lambda texts: np.array([vectors[t] for t in texts]),
    )
    # t=0.5: q2 hits q1 (right), q3 hits q2 (wrong), q4 exact (right)
    # t=0.9: q3 hits q2 (wrong), q4 exact; t=0.99: only the exact repeat
    assert sweep.hit_rate == (0.75, 0.5, 0.25)
    assert sweep.wrong_rate == (0.25, 0.25, 0.0)
    assert sweep.precision == pytest.approx((2 / 3, 0.5, 1.0))
    assert list(sweep.to_frame().columns) == ["threshold", "hit_rate", "wrong_rate", "precision"]
    assert normalize_query("Q1 ") == "q1"
    with pytest.raises(ValueError, match="one label per question"):
        threshold_sweep(["a"], [], [0.5], embed=lambda t: np.ones((len(t), 2)))


def test_threshold_sweep_with_the_real_embedder(embedder):
    queries = ["What is the height of Mount Everest?", "How tall is Mount Everest?",
               "Who created Python?", "Who created Linux?"]
    sweep = threshold_sweep(queries, ["everest", "everest", "python", "linux"], [0.3, 0.8, 0.99],
                            embed=embedder.embed)
    assert sweep.hit_rate[0] >= sweep.hit_rate[1] >= sweep.hit_rate[2] == 0.0
    assert sweep.wrong_rate[1] == 0.0 and sweep.hit_rate[1] == 0.25  # only the paraphrase hits at 0.8


# --- the cache in the answer path -------------------------------------------------------------

from workbench import tracing  # noqa: E402
from workbench.config import (  # noqa: E402
    ConfigError,
    PipelineConfig,
    ResponseCacheConfig,
    config_hash,
    replace_path,
)
from workbench.datasets import Dataset  # noqa: E402
from workbench.experiment import build_pipeline  # noqa: E402
from workbench.response_cache import (  # noqa: E402
    ResponseCacheError,
    cache_scope,
    corpus_version,
    shares_relevance,
)
from workbench.types import Document, Span  # noqa: E402

DOCS = (
    Document(id="everest", text="Mount Everest is 8,849 metres high. It lies in the Himalaya on the Nepal border."),
    Document(id="python", text="Python was created by Guido van Rossum. Its first release came in 1991."),
    Document(id="linux", text="Linux was written by Linus Torvalds in 1991 as a free kernel."),
)


def tiny(docs=DOCS) -> Dataset:
    return Dataset(name="tiny", documents=docs, queries={"q": "How high is Mount Everest?"})


def cached_config(tmp_path, **cache) -> PipelineConfig:
    config = PipelineConfig(name="cached")
    for path, value in {"retrieval.kind": "bm25", "retrieval.k": 3, "generation.kind": "extractive",
                        "generation.extractive_scorer": "lexical", "chunking.method": "none"}.items():
        config = replace_path(config, path, value)
    return replace_path(config, "response_cache", ResponseCacheConfig(path=str(tmp_path / "r.sqlite"), **cache))


def test_a_repeat_is_served_from_the_cache_marked_and_free(tmp_path):
    pipeline = build_pipeline(cached_config(tmp_path, mode="exact"), tiny())
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    try:
        first = pipeline.answer("How high is Mount Everest?")
        first_id = tracing.last_trace_id()
        streamed: list[str] = []
        again = pipeline.answer("  how high is MOUNT everest? ", on_text=streamed.append)
        again_id = tracing.last_trace_id()
        assert tracing.flush()
    finally:
        tracing.disable_tracing()
    assert first.cache_hit is None and len(first.attempts) == 1 and first.hits
    assert again.cache_hit is not None and again.cache_hit.kind == "exact"
    assert again.cache_hit.matched_query == "How high is Mount Everest?"
    assert again.answer.text == first.answer.text and again.answer.citations == first.answer.citations
    assert again.attempts == () and again.hits == () and again.answer.usage.cost_usd == 0.0
    assert again.answer.usage.input_tokens == again.answer.usage.output_tokens == 0
    assert streamed == [first.answer.text]
    assert {s.name for s in store.spans(again_id)} == {"answer", "response_cache"}
    spans = {s.name: s.attributes for s in store.spans(again_id)}
    assert spans["response_cache"]["workbench.response_cache.hit"] is True
    assert spans["response_cache"]["workbench.response_cache.kind"] == "exact"
    missed = {s.name: s.attributes for s in store.spans(first_id)}
    assert missed["response_cache"]["workbench.response_cache.hit"] is False and "generate" in missed


def test_reingesting_or_another_config_retires_answers_but_a_new_threshold_does_not(tmp_path):
    config = cached_config(tmp_path, mode="exact")
    build_pipeline(config, tiny()).answer("Who created Python?")
    assert build_pipeline(config, tiny()).answer("Who created Python?").cache_hit is not None
    edited = (DOCS[0], Document(id="python", text="Python was created by Guido van Rossum in 1989."), DOCS[2])
    assert build_pipeline(config, tiny(edited)).answer("Who created Python?").cache_hit is None
    assert build_pipeline(replace_path(config, "retrieval.k", 2), tiny()).answer("Who created Python?").cache_hit is None
    looser = replace_path(config, "response_cache.threshold", 0.5)
    assert cache_scope(looser, "v") == cache_scope(config, "v") != cache_scope(config, "w")
    assert build_pipeline(looser, tiny()).answer("Who created Python?").cache_hit is not None
    # the cache settings enter the run hash only when set, so earlier runs keep their hash
    assert config_hash(replace_path(config, "response_cache", ResponseCacheConfig())) != config_hash(config)
    plain = PipelineConfig()
    assert config_hash(plain) == config_hash(replace_path(plain, "response_cache.ttl_s", 86400.0))


def test_corpus_version_sees_every_chunk_change(tmp_path):
    chunks = build_pipeline(cached_config(tmp_path), tiny()).chunks
    v = corpus_version(chunks)
    assert len(v) == 16 and corpus_version(chunks) == v
    assert corpus_version(chunks[:-1]) != v


def test_entries_expire_after_the_ttl(tmp_path):
    now = [1000.0]
    with ResponseCache(tmp_path / "c.sqlite", ttl_s=60, clock=lambda: now[0]) as cache:
        cache.put("q", answer("a"))
        now[0] += 59
        hit = cache.get("q")
        assert hit is not None and hit.age_s == pytest.approx(59)
        now[0] += 2
        assert cache.get("q") is None
    with pytest.raises(ValueError, match="ttl_s=-1"):
        ResponseCache(tmp_path / "c.sqlite", ttl_s=-1)


def test_config_rejects_a_bad_threshold_mode_or_ttl():
    with pytest.raises(ConfigError, match=r"response_cache.threshold=1.2 must lie in \[0, 1\]"):
        ResponseCacheConfig(threshold=1.2)
    with pytest.raises(ConfigError, match=r"response_cache.threshold=-0.1"):
        ResponseCacheConfig(threshold=-0.1)
    with pytest.raises(ConfigError, match="unknown response_cache.mode 'fuzzy'"):
        ResponseCacheConfig(mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ttl_s=-5"):
        ResponseCacheConfig(ttl_s=-5)


class Named:
    """A real (tiny) embedder: a fixed model id, bag-of-letters vectors."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def embed_query(self, text: str) -> np.ndarray:
        v = np.zeros(26, dtype=np.float32)
        for ch in text.lower():
            if "a" <= ch <= "z":
                v[ord(ch) - 97] += 1
        return v


def test_a_file_of_another_embedding_model_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResponseCache(path, embedder=Named("model-a"), threshold=0.9) as cache:  # type: ignore[arg-type]
        cache.put("How high is Everest?", answer("8,849 m [1]"))
        assert cache.get("how high is everest ?").kind == "semantic"
    with pytest.raises(ResponseCacheError, match=r"model 'model-a', not 'model-b'; set response_cache.path"):
        ResponseCache(path, embedder=Named("model-b"), threshold=0.9)  # type: ignore[arg-type]
    with ResponseCache(path) as exact_only:  # exact lookups compare no vectors: any model may read
        assert exact_only.get("How high is Everest?").kind == "exact"
    with ResponseCache(path, embedder=Named("model-a"), threshold=0.9) as again:  # type: ignore[arg-type]
        assert len(again) == 1


def test_shares_relevance_by_qrels_and_by_overlapping_spans():
    docs = (Document(id="a", text="x" * 100), Document(id="b", text="y" * 100))
    spans = Dataset(name="s", documents=docs, queries={"1": "one", "2": "two", "3": "three"},
                    spans={"1": (Span(doc_id="a", start=0, end=20),), "2": (Span(doc_id="a", start=15, end=40),),
                           "3": (Span(doc_id="a", start=50, end=60),)},
                    qrels={"1": {"a": 1}, "2": {"a": 1}, "3": {"a": 1}})
    agree = shares_relevance(spans)
    assert agree("1", "2") and not agree("1", "3") and agree("3", "3")  # same document is not enough
    qrels = Dataset(name="q", documents=docs, queries={"1": "one", "2": "two", "3": "three"},
                    qrels={"1": {"a": 1, "b": 0}, "2": {"a": 2}, "3": {"b": 1}})
    agree = shares_relevance(qrels)
    assert agree("1", "2") and not agree("1", "3")  # grade 0 is not relevant
    vectors = {"one": [1.0, 0.0], "two": [0.8, 0.6], "three": [0.6, 0.8]}
    sweep = threshold_sweep(["one", "two", "three"], ["1", "2", "3"], [0.5, 0.9],
                            embed=lambda t: np.array([vectors[x] for x in t]), agree=agree)
    assert sweep.hit_rate == (2 / 3, 1 / 3) and sweep.wrong_rate == (1 / 3, 1 / 3)
    assert sweep.choose(max_wrong_rate=0.5) == (0.5, 2 / 3, 1 / 3)
    with pytest.raises(ValueError, match="no threshold"):
        sweep.choose(max_wrong_rate=0.1)


def test_query_log_mixes_questions_paraphrases_and_repeats_by_seed(cranfield, chunking_set, tmp_path):
    from workbench.response_cache import load_paraphrases, query_log

    for dataset in (cranfield, chunking_set):
        bundled = load_paraphrases(dataset.name)
        assert set(bundled) <= set(dataset.evaluated_queries) and len(bundled) >= 30
        queries, labels = query_log(dataset, bundled, repeat_share=0.2, seed=0)
        n = len(dataset.evaluated_queries)
        assert len(queries) == len(labels) == n + round(0.2 * n) + sum(map(len, bundled.values()))
        for qid, texts in bundled.items():
            for text in texts:
                assert labels[queries.index(text)] == qid
        assert sorted(set(labels)) == sorted(dataset.evaluated_queries)
        assert query_log(dataset, bundled, seed=0) == (queries, labels) != query_log(dataset, bundled, seed=1)
    with pytest.raises(ValueError, match="does not judge"):
        query_log(cranfield, {"no-such-id": ("x",)})
    with pytest.raises(ValueError, match="repeat_share=1.5"):
        query_log(cranfield, repeat_share=1.5)
    bad = tmp_path / "p.csv"
    bad.write_text("query_id,paraphrase\n1,\n")
    with pytest.raises(ValueError, match="line 2: needs a query_id and a paraphrase"):
        load_paraphrases(bad)
    with pytest.raises(ValueError, match="no paraphrase file"):
        load_paraphrases(tmp_path / "missing.csv")


def test_traffic_is_labelled_by_the_dataset_where_it_can_be(cranfield):
    from workbench.response_cache import label_queries

    traffic = [cranfield.queries["1"].upper(), "what is a wing?", "What is a wing? "]
    labels = label_queries(traffic, cranfield)
    assert labels == ["1", "what is a wing?", "what is a wing?"]
    assert label_queries(traffic) == [normalize_query(q) for q in traffic]
    vectors = {traffic[0]: [1.0, 0.0], traffic[1]: [0.9, 0.1], traffic[2]: [0.9, 0.1]}
    sweep = threshold_sweep(traffic, labels, [0.5], embed=lambda t: np.array([vectors[x] for x in t]),
                            agree=shares_relevance(cranfield))
    # the unjudged question hitting a judged one counts as wrong (an upper bound); its exact repeat is right
    assert sweep.hit_rate == (2 / 3,) and sweep.wrong_rate == (1 / 3,)
