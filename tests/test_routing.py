"""Routers, labelled sets and router evaluation (workbench.routing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.config import ConfigError, EmbeddingConfig, RoutingConfig
from workbench.datasets import Dataset
from workbench.embedding import Embedder
from workbench.prices import load_prices
from workbench.resources import Resources
from workbench.retrieval import BM25Retriever
from workbench.routing import (
    DEMO_LABELS,
    CascadeRouter,
    LabelledSet,
    LearnedRouter,
    RetrievalRouter,
    RoutingError,
    adequate_tiers,
    cascade_tiers,
    choose_tiers,
    cross_validated_adequacy,
    derive_demo_labels,
    evaluate_routing,
    load_labels,
    make_router,
    query_features,
    retrieval_features,
    sweep_thresholds,
    tier_costs,
    tier_quality,
)
from workbench.tokens import estimate_tokens
from workbench.types import Answer, Chunk, Document, Hit, Span, Usage

TIERS = RoutingConfig().tiers
HAIKU, SONNET, OPUS = TIERS

# Two separable groups: short factual look-ups (cheap) and broad multi-part analyses (strong).
SIMPLE = [
    "What is the capital of France?",
    "When was the Eiffel Tower built?",
    "Who wrote Hamlet?",
    "What year did the war end?",
    "How tall is Mount Everest?",
    "What is the boiling point of water?",
    "Who painted the Mona Lisa?",
    "What currency does Japan use?",
    "Where is the Louvre?",
    "What is the chemical symbol for gold?",
]
HARD = [
    "Compare the economic policies of the two administrations and explain their long-term effects on inflation.",
    "Analyse why the treaty failed, and contrast its provisions with the agreement that replaced it.",
    "Explain the trade-offs between renewable subsidies and carbon taxes across several industries.",
    "Evaluate how the reforms changed healthcare access and discuss the criticisms raised by both parties.",
    "Discuss the causes of the financial crisis and compare the regulatory responses in Europe and America.",
    "Assess the strategic reasons behind the alliance and explain how it reshaped regional security.",
    "Contrast the philosophies of the two movements and analyse their influence on modern politics.",
    "Explain the relationship between monetary policy, unemployment and wage growth over the decade.",
    "Analyse the implications of the ruling for privacy law and compare it with earlier precedents.",
    "Evaluate the competing explanations for the decline of the empire and weigh their evidence.",
]


def _labelled(simple: list[str], hard: list[str]) -> LabelledSet:
    queries = tuple(simple + hard)
    return LabelledSet(
        tiers=TIERS,
        ids=tuple(str(i) for i in range(len(queries))),
        queries=queries,
        labels=(HAIKU,) * len(simple) + (OPUS,) * len(hard),
    )


# ------------------------------------------------------------------ config and factory


def test_config_rejects_bad_routing_values():
    with pytest.raises(ConfigError, match="cascade.*fixed.*learned.*retrieval.*rules"):
        RoutingConfig(kind="smart")
    with pytest.raises(ConfigError, match="one cutoff per tier"):
        RoutingConfig(kind="rules", rule_cutoffs=(1.0,))
    with pytest.raises(ConfigError, match="threshold=1.5"):
        RoutingConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="repeats a model"):
        RoutingConfig(tiers=(HAIKU, HAIKU))


def test_fixed_router_and_unknown_model_error():
    assert make_router(RoutingConfig(kind="fixed"), Resources(model=SONNET)).route("anything") == SONNET
    with pytest.raises(RoutingError, match=r"gpt-9.*not in the price table.*claude-haiku-4-5.*claude-opus-4-5.*claude-sonnet-4-5"):
        make_router(RoutingConfig(kind="fixed"), Resources(model="gpt-9"))
    with pytest.raises(RoutingError, match="gpt-9"):
        make_router(RoutingConfig(kind="rules", tiers=(HAIKU, "gpt-9", OPUS)))


def test_factories_name_missing_resources():
    with pytest.raises(RoutingError, match="routing.path"):
        make_router(RoutingConfig(kind="learned"))
    with pytest.raises(RoutingError, match="needs a retriever"):
        make_router(RoutingConfig(kind="retrieval", path="x.npz"))
    with pytest.raises(RoutingError, match="answer=.*judge="):
        make_router(RoutingConfig(kind="cascade"))


# ------------------------------------------------------------------ rules


def test_query_features_and_rules_router():
    cfg = RoutingConfig(kind="rules")
    f = query_features(
        "Why did sales fall in 2023, and how does that compare with 2022?",
        comparison_cues=cfg.comparison_cues,
        reasoning_cues=cfg.reasoning_cues,
        count_tokens=estimate_tokens,
    )
    assert (f.questions, f.clauses, f.comparison, f.reasoning, f.numbers_or_code) == (1, 2, True, True, True)
    router = make_router(cfg)
    assert router.route("Who wrote Hamlet?") == HAIKU
    hard = "Why did sales fall in 2023, and how does that compare with 2022? What changed?"
    assert router.route(hard) == OPUS
    # the threshold moves every cutoff: near 0 everything is cheap, near 1 everything escalates
    assert make_router(RoutingConfig(kind="rules", threshold=0.001)).route(hard) == HAIKU
    assert make_router(RoutingConfig(kind="rules", threshold=0.999)).route("Who wrote Hamlet?") == OPUS


# ------------------------------------------------------------------ labels


def test_shipped_demo_labels_equal_their_derivation(chunking_set):
    assert DEMO_LABELS.read_text(encoding="utf-8") == derive_demo_labels(chunking_set, TIERS)
    labels = load_labels(DEMO_LABELS, TIERS)
    assert len(labels.ids) == 276
    assert set(labels.labels) == set(TIERS)


def test_derivation_rule_on_a_small_set():
    doc = Document(id="d", text="x" * 5000)
    dataset = Dataset(
        name="tiny",
        documents=(doc,),
        queries={"1": "one span", "2": "two near spans", "3": "two far spans"},
        spans={
            "1": (Span(doc_id="d", start=0, end=10),),
            "2": (Span(doc_id="d", start=0, end=10), Span(doc_id="d", start=100, end=120)),
            "3": (Span(doc_id="d", start=0, end=10), Span(doc_id="d", start=3000, end=3010)),
        },
    )
    rows = derive_demo_labels(dataset, TIERS, gap_chars=200).splitlines()
    assert rows == [
        "id,query,tier,spans,places",
        f"1,one span,{HAIKU},1,1",
        f"2,two near spans,{SONNET},2,1",
        f"3,two far spans,{OPUS},2,2",
    ]


def test_load_labels_errors_and_jsonl(tmp_path):
    bad_tier = tmp_path / "a.csv"
    bad_tier.write_text(f"query,tier\nok?,{HAIKU}\nhard?,gpt-9\n")
    with pytest.raises(RoutingError, match=r"row 2.*unknown tier 'gpt-9'.*claude-haiku-4-5"):
        load_labels(bad_tier, TIERS)
    empty = tmp_path / "b.csv"
    empty.write_text(f"query,tier\n  ,{HAIKU}\n")
    with pytest.raises(RoutingError, match="row 1.*is empty"):
        load_labels(empty, TIERS)
    no_col = tmp_path / "c.csv"
    no_col.write_text("question,tier\nx,y\n")
    with pytest.raises(RoutingError, match=r"lacks column\(s\) \['query'\]"):
        load_labels(no_col, TIERS)
    with pytest.raises(RoutingError, match="does not exist"):
        load_labels(tmp_path / "missing.csv", TIERS)
    good = tmp_path / "d.jsonl"
    good.write_text("\n".join(json.dumps({"id": f"q{i}", "query": f"q {i}?", "tier": t}) for i, t in enumerate(TIERS)))
    labels = load_labels(good, TIERS)
    assert labels.ids == ("q0", "q1", "q2") and labels.label_index.tolist() == [0, 1, 2]
    assert labels.fingerprint() != load_labels(bad_tier, (HAIKU, "gpt-9")).fingerprint()


def test_split_is_stratified_and_seeded():
    labelled = _labelled(SIMPLE, HARD)
    train, test = labelled.split(0.3, seed=1)
    assert sorted(train.ids + test.ids) == sorted(labelled.ids)
    assert test.labels.count(HAIKU) == 3 and test.labels.count(OPUS) == 3
    assert labelled.split(0.3, seed=1)[1].ids == test.ids


# ------------------------------------------------------------------ evaluation (pure)


def test_tier_quality_and_adequate_tiers():
    q = tier_quality([0, 1, 2], 3, below=0.5)
    assert q.tolist() == [[1, 1, 1], [0.5, 1, 1], [0.25, 0.5, 1]]
    assert adequate_tiers(q).tolist() == [0, 1, 2]
    assert adequate_tiers(np.array([[0.7, 0.8, 0.8]]), tolerance=0.1).tolist() == [0]


def test_choose_and_cascade_tiers_count_wasted_calls():
    adequacy = np.array([[0.9, 1.0, 1.0], [0.2, 0.6, 1.0], [0.1, 0.3, 1.0]])
    assert choose_tiers(adequacy, 0.5).tolist() == [0, 1, 2]
    assert choose_tiers(adequacy, 0.0).tolist() == [0, 0, 0]
    cost = np.array([[1.0, 3.0, 5.0]] * 3)
    chosen, spent = cascade_tiers(adequacy, 0.5, cost)
    assert chosen.tolist() == [0, 1, 2] and spent.tolist() == [1.0, 4.0, 9.0]


def test_evaluate_routing_hand_computed():
    labels = [0, 0, 1, 2]
    quality = tier_quality(labels, 3)
    cost = np.array([[1.0, 3.0, 5.0]] * 4)
    ev = evaluate_routing([0, 1, 1, 0], quality, cost, tiers=TIERS, labels=labels, threshold=0.5)
    assert ev.accuracy == 0.5
    assert ev.confusion == ((1, 1, 0), (0, 1, 0), (1, 0, 0))
    assert ev.cost_usd == 8.0 and ev.strongest_cost_usd == 20.0
    assert ev.cost_reduction == pytest.approx(0.6)
    assert ev.quality == pytest.approx((1 + 1 + 1 + 0.25) / 4)
    assert ev.quality_retained == pytest.approx(0.8125)
    assert (ev.under_routed, ev.over_routed) == (0.25, 0.25)
    # random routing at the same cost: strongest with p = (8 - 4) / (20 - 4) = 0.25
    cheapest_q = (1 + 1 + 0.5 + 0.25) / 4
    assert ev.random_quality == pytest.approx(0.75 * cheapest_q + 0.25)
    assert ev.summary().startswith("60.0% cost reduction at 81.2% of top-model quality")
    assert ev.to_frame().loc[0, "share:claude-sonnet-4-5"] == 0.5
    assert ev.confusion_frame().loc[OPUS, HAIKU] == 1
    with pytest.raises(RoutingError, match="shapes do not match"):
        evaluate_routing([0, 1], quality, cost, tiers=TIERS)


def test_sweep_and_operating_point():
    labels = np.array([0, 0, 1, 2])
    quality, cost = tier_quality(labels, 3), np.array([[1.0, 3.0, 5.0]] * 4)
    perfect = np.eye(3)[labels].cumsum(axis=1)  # adequacy 1 from the label's tier up
    curve = sweep_thresholds(perfect, quality, cost, tiers=TIERS, labels=labels, thresholds=(0.0, 0.5, 1.0))
    frame = curve.to_frame()
    assert frame["threshold"].tolist() == [0.0, 0.5, 1.0]
    best = curve.operating_point(0.95)
    assert best.threshold == 0.5 and best.accuracy == 1.0 and best.quality_retained == 1.0
    assert best.cost_usd == 1 + 1 + 3 + 5
    cheap = sweep_thresholds(perfect, quality, cost, tiers=TIERS, labels=labels, thresholds=(0.0,))
    with pytest.raises(RoutingError, match="no threshold keeps 95%"):
        cheap.operating_point(0.95)
    cascade = sweep_thresholds(perfect, quality, cost, tiers=TIERS, labels=labels, thresholds=(0.5,), cascade=True)
    assert cascade.points[0].cost_usd == 1 + 1 + (1 + 3) + (1 + 3 + 5)


def test_tier_costs_follow_the_price_table():
    prices = load_prices()
    cost = tier_costs(["Who wrote Hamlet?"], TIERS, prices=prices, context_tokens=1000, output_tokens=100)
    tokens = estimate_tokens("Who wrote Hamlet?") + 1000
    expected = [(tokens * prices[t].input + 100 * prices[t].output) / 1e6 for t in TIERS]
    assert cost[0].tolist() == pytest.approx(expected)
    with pytest.raises(RoutingError, match="not in the price table"):
        tier_costs(["q"], ("nope",), prices=prices)


# ------------------------------------------------------------------ cascade


def _answer(query: str, model: str) -> Answer:
    price = {HAIKU: 1.0, SONNET: 3.0, OPUS: 5.0}[model]
    return Answer(text=f"{model}: {query}", citations=(), usage=Usage(model=model, cost_usd=price))


def test_cascade_escalates_and_counts_the_wasted_calls():
    # a judge that trusts only the strongest model's answers for long questions
    def judge(query: str, answer: Answer) -> float:
        return 1.0 if len(query) < 20 or answer.usage.model == OPUS else 0.2

    router = make_router(RoutingConfig(kind="cascade", threshold=0.5), answer=_answer, judge=judge)
    assert router.route("Who wrote Hamlet?") == HAIKU
    outcome = router.run("Compare the two treaties in detail.")
    assert outcome.model == OPUS and [a.usage.model for a in outcome.attempts] == list(TIERS)
    assert outcome.confidences == (0.2, 0.2, 1.0)
    assert (outcome.cost_usd, outcome.wasted_usd) == (9.0, 4.0)
    assert outcome.answer.text.startswith(OPUS)
    assert isinstance(router, CascadeRouter)


# ------------------------------------------------------------------ learned


@pytest.mark.slow
def test_learned_router_fits_saves_loads_and_checks_the_embedder(tmp_path, embedder):
    train = _labelled(SIMPLE[:8], HARD[:8])
    held_out = SIMPLE[8:] + HARD[8:]
    for classifier in ("logistic", "knn"):
        router = LearnedRouter(tiers=TIERS, embedder=embedder, classifier=classifier, knn_k=5).fit(train)
        assert [router.route(q) for q in held_out] == [HAIKU, HAIKU, OPUS, OPUS]
        path = router.save(tmp_path / f"{classifier}.npz")
        cfg = RoutingConfig(kind="learned", path=str(path))
        loaded = make_router(cfg, embedder=embedder)
        assert loaded.labels_hash == train.fingerprint()
        np.testing.assert_allclose(loaded.adequacy(held_out), router.adequacy(held_out))
    other = Embedder(EmbeddingConfig(model="sentence-transformers/all-mpnet-base-v2"))
    with pytest.raises(RoutingError, match=r"embedding_model='sentence-transformers/all-MiniLM-L6-v2'.*set embedding.model"):
        make_router(cfg, embedder=other)
    with pytest.raises(RoutingError, match="trained for tiers"):
        LearnedRouter.load(path, tiers=(HAIKU, OPUS), embedder=embedder)
    with pytest.raises(RoutingError, match="is not trained"):
        LearnedRouter(tiers=TIERS, embedder=embedder).route("x")
    with pytest.raises(RoutingError, match="no saved router"):
        LearnedRouter.load(tmp_path / "none.npz", tiers=TIERS, embedder=embedder)
    knn_config = RoutingConfig(kind="learned", classifier="knn", knn_k=3)
    assert LearnedRouter.untrained(knn_config, Resources(embedder=embedder)).fit(train).route(held_out[-1]) == OPUS
    out_of_fold = cross_validated_adequacy(
        lambda: LearnedRouter(tiers=TIERS, embedder=embedder), train, folds=4, seed=0
    )
    assert out_of_fold.shape == (16, 3)
    assert (choose_tiers(out_of_fold, 0.5) == train.label_index).mean() >= 0.75


# ------------------------------------------------------------------ retrieval-aware


def _chunk(doc: str, start: int, text: str) -> Chunk:
    return Chunk(id=f"{doc}:{start}", doc_id=doc, text=text, start=start, end=start + len(text))


def test_retrieval_features_hand_computed():
    hits = [
        Hit(chunk=_chunk("a", 0, "x"), score=3.0, rank=1),
        Hit(chunk=_chunk("a", 5000, "y"), score=2.0, rank=2),
        Hit(chunk=_chunk("b", 100, "z"), score=1.0, rank=3),
        Hit(chunk=_chunk("a", 500, "w"), score=0.0, rank=4),
    ]
    assert retrieval_features(hits, place_gap_chars=2000) == (3.0, 1.0, 1.5, 2.0, 3.0)
    assert retrieval_features([], place_gap_chars=2000) == (0.0,) * 5


def test_retrieval_router_fits_and_round_trips(tmp_path):
    topics = ["volcano lava eruption", "violin concerto orchestra", "glacier ice melting", "tax revenue budget"]
    chunks = [_chunk(f"d{i}", 0, f"{t} " * 20) for i, t in enumerate(topics)]
    chunks += [_chunk(f"d{i}", 3000 * (j + 1), f"{t} notes {j}") for i, t in enumerate(topics) for j in range(2)]
    retriever = BM25Retriever(chunks)
    # evidence on one topic -> cheap; queries spanning every topic -> strong
    simple = [f"{t} facts" for t in topics] + [f"about the {t}" for t in topics]
    hard = [" ".join(topics) + f" overview {i}" for i in range(8)]
    train = _labelled(simple, hard)
    router = RetrievalRouter(tiers=TIERS, retriever=retriever, k=4).fit(train)
    assert router.route("violin concerto orchestra history") == HAIKU
    assert router.route("tax revenue budget, glacier ice melting, violin concerto orchestra and volcano lava eruption") == OPUS
    path = router.save(tmp_path / "r.npz")
    cfg = RoutingConfig(kind="retrieval", path=str(path), retrieval_k=4)
    loaded = make_router(cfg, retriever=retriever)
    np.testing.assert_allclose(loaded.adequacy(hard[:2]), router.adequacy(hard[:2]))
    with pytest.raises(RoutingError, match="retrieval_k=4.*retrieval_k=10"):
        make_router(RoutingConfig(kind="retrieval", path=str(path)), retriever=retriever)
    with pytest.raises(RoutingError, match="'retrieval' router"):
        make_router(RoutingConfig(kind="learned", path=str(path)))
