"""The notebook studies (workbench.evaluation) and their figures, on a tiny hand-made dataset."""

from __future__ import annotations

import math

import pytest

from workbench import evaluation, plots
from workbench.config import ChunkingConfig, PipelineConfig, RerankingConfig, RetrievalConfig
from workbench.costs import Workload, monthly_cost
from workbench.datasets import Dataset
from workbench.tokens import estimate_tokens
from workbench.types import Document, Span

TOPICS = {
    "wings": "Swept wings delay the onset of compressibility drag at high subsonic speed. "
             "The sweep angle reduces the normal Mach number seen by the leading edge. "
             "Boundary layer flow on swept wings moves toward the tips and can stall them early.",
    "heat": "Heat transfer at hypersonic speed is dominated by the stagnation point. "
            "A blunt nose lowers the peak heating rate because the shock stands further off. "
            "Ablative shields carry heat away by melting and vaporising their surface.",
    "panel": "Panel flutter is a self-excited oscillation of a thin plate in supersonic flow. "
             "Stiffening the panel or adding damping raises the speed at which flutter begins. "
             "Cavity pressure behind the panel also changes the flutter boundary.",
}
QUESTIONS = {
    "q1": ("why do swept wings delay compressibility drag", "wings", "The sweep angle reduces the normal Mach number"),
    "q2": ("how does a blunt nose lower the heating rate", "heat", "A blunt nose lowers the peak heating rate"),
    "q3": ("what raises the speed at which panel flutter begins", "panel", "Stiffening the panel or adding damping"),
    "q4": ("what do ablative heat shields do", "heat", "Ablative shields carry heat away"),
}


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    spans = {}
    for qid, (_, doc, excerpt) in QUESTIONS.items():
        start = TOPICS[doc].index(excerpt)
        spans[qid] = (Span(doc_id=doc, start=start, end=start + len(excerpt)),)
    return Dataset(
        name="tiny",
        documents=tuple(Document(id=d, text=t, metadata={"title": d, "year": 1960 + i})
                        for i, (d, t) in enumerate(TOPICS.items())),
        queries={q: text for q, (text, _, _) in QUESTIONS.items()},
        qrels={q: {doc: 1} for q, (_, doc, _) in QUESTIONS.items()},
        spans=spans,
    )


BM25 = PipelineConfig(chunking=ChunkingConfig(tokenizer="whitespace"), retrieval=RetrievalConfig(kind="bm25", k=10))


# --- recommend ---------------------------------------------------------------------------------


def test_recommend_picks_the_cheapest_point_within_the_share_of_the_best():
    points = {"a": {"q": 0.90, "c": 3.0}, "b": {"q": 0.86, "c": 1.0}, "c": {"q": 0.80, "c": 0.5}}
    rec = evaluation.recommend(points, metric="q", cost="c", share=0.95)
    assert (rec.label, rec.best_label) == ("b", "a")
    assert rec.value == 0.86 and rec.cost == 1.0 and rec.best_cost == 3.0
    assert "b:" in str(rec) and "a at 0.900" in str(rec)
    assert evaluation.recommend(points, metric="q", cost="c", share=0.85).label == "c"
    assert evaluation.recommend(points, metric="q", cost="c", share=1.0).label == "a"


def test_recommend_breaks_cost_ties_by_quality_and_says_when_the_best_is_cheapest():
    points = {"x": {"q": 0.5, "c": 1.0}, "y": {"q": 0.6, "c": 1.0}}
    rec = evaluation.recommend(points, metric="q", cost="c", share=0.5)
    assert rec.label == "y" == rec.best_label
    assert "no cheaper setting" in str(rec)


@pytest.mark.parametrize(
    ("points", "kwargs", "message"),
    [
        ({}, {}, "at least one point"),
        ({"a": {"q": 1.0, "c": 1.0}}, {"share": 0.0}, "share=0.0"),
        ({"a": {"q": 1.0}}, {}, "lacks ['c']"),
        ({"a": {"q": 0.0, "c": 1.0}}, {}, "best q is 0.0"),
    ],
)
def test_recommend_rejects_bad_input(points, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        evaluation.recommend(points, metric="q", cost="c", **kwargs)


# --- chunk size ----------------------------------------------------------------------------------


def test_chunk_size_study_prices_the_context_each_setting_sends(tiny):
    study = evaluation.chunk_size_study(tiny, methods=("fixed", "recursive"), sizes=(8, 64), overlaps=(0, 16),
                                     base=BM25, k=2)
    labels = [p.label for p in study.points]
    # overlap 16 is left out at size 8 (overlap must be smaller than the size)
    assert labels == ["fixed 8", "fixed 64", "fixed 64/16", "recursive 8", "recursive 64", "recursive 64/16"]
    small, large = study.points[0], study.points[1]
    assert small.n_chunks > large.n_chunks == 3  # each ~40-word document fits one 64-word chunk
    assert large.mean_chunk_tokens == pytest.approx(sum(estimate_tokens(t) for t in TOPICS.values()) / 3)
    # two whole documents per query in the prompt, so between the two shortest and two longest
    doc_tokens = sorted(estimate_tokens(t) for t in TOPICS.values())
    assert sum(doc_tokens[:2]) <= large.context_tokens <= sum(doc_tokens[-2:])
    assert small.context_tokens < large.context_tokens and small.usd_per_1k < large.usd_per_1k
    assert {"span_recall@2", "span_precision@2", "span_iou@2", "ndcg@10"} <= set(large.metrics)
    assert large.metrics["span_recall@2"] == 1.0  # BM25 ranks the right document first for each query
    frame = study.to_frame()
    assert list(frame["label"]) == labels and "usd_per_1k" in frame and "span_iou@2" in frame
    rec = study.recommend("span_recall@2", share=0.95)
    assert rec.label in labels and rec.value >= 0.95 * rec.best_value


def test_chunk_size_study_rejects_an_empty_sweep_and_a_bad_k(tiny):
    with pytest.raises(ValueError, match="nothing to sweep"):
        evaluation.chunk_size_study(tiny, methods=("fixed",), sizes=(16,), overlaps=(16,), base=BM25)
    with pytest.raises(ValueError, match="k=0"):
        evaluation.chunk_size_study(tiny, base=BM25, k=0)


# --- retrievers and filters ------------------------------------------------------------------------


def test_filter_study_keeps_each_query_inside_its_own_document(tiny):
    study = evaluation.filter_study(tiny, field="title", kinds=("bm25",), base=BM25)
    assert study.queries == 4
    on, off = study.results[("bm25", True)], study.results[("bm25", False)]
    for row in on.rows:
        assert set(row.retrieved) == set(tiny.qrels[row.query_id])
    assert len({d for r in off.rows for d in r.retrieved}) == 3  # unfiltered queries see every document
    assert [r.query_id for r in on.rows] == [r.query_id for r in off.rows]
    frame = study.to_frame()
    assert list(frame["filter"]) == ["off", "on"] and frame.loc[1, "mrr@10"] == 1.0
    gain, _ = study.effect("span_recall@5")["bm25"]
    assert gain == pytest.approx(on.aggregates["span_recall@5"] - off.aggregates["span_recall@5"])


def test_filter_study_names_the_known_fields_when_the_field_is_missing(tiny):
    with pytest.raises(ValueError, match=r"field 'corpus'.*\['title', 'year'\]"):
        evaluation.filter_study(tiny, field="corpus", kinds=("bm25",), base=BM25)


@pytest.mark.slow
def test_retrieval_study_compares_bm25_dense_and_fusions(tiny):
    study = evaluation.retrieval_study(tiny, base=BM25, dense_weights=(0.0, 1.0))
    frame = study.to_frame()
    assert list(frame["label"]) == ["bm25", "dense", "hybrid rrf", "hybrid w=0", "hybrid w=1"]
    assert list(frame["retrievers"]) == [1, 1, 2, 2, 2]
    assert all(frame["p50_ms"] > 0)
    rec = study.recommend("ndcg@10", share=0.99)
    assert rec.cost_name == "retrievers per query"
    best = max(p.metrics["ndcg@10"] for p in study.points)
    assert rec.value >= 0.99 * best
    figure = plots.fusion_weight_figure(study, "ndcg@10")
    assert list(figure.data[0].x) == [0.0, 1.0] and len(figure.data) == 1 + 3


# --- reranking --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rerank(tiny):
    base = PipelineConfig(chunking=ChunkingConfig(method="fixed", size=8, tokenizer="whitespace"),
                          retrieval=RetrievalConfig(kind="bm25"))
    return evaluation.rerank_study(tiny, {"mmr": RerankingConfig(kind="mmr", mmr_lambda=0.5)}, base=base,
                                depths=(4, 8), k=2, context_sizes=(2, 4, 8))


def test_rerank_study_measures_each_depth_against_the_first_stage(rerank):
    frame = rerank.to_frame()
    assert list(frame["depth"]) == [4, 8] and set(frame["reranker"]) == {"mmr"}
    assert (frame["ndcg_before"] == frame["ndcg_before"].iloc[0]).all()  # the same first-stage top 2
    recalls = [rerank.first_stage[n]["recall"] for n in (2, 4, 8)]
    assert recalls == sorted(recalls) and rerank.unit == "chunk"
    assert len(rerank.per_query_frame()) == 2 * rerank.queries


def test_context_tradeoff_prices_more_chunks_against_reranked_ones(rerank):
    tradeoff = evaluation.context_tradeoff(rerank, depth=8, workload=Workload(output_tokens=0))
    frame = tradeoff.to_frame()
    assert list(frame["label"]) == ["first stage, top 2", "first stage, top 4", "first stage, top 8",
                                    "mmr, top 2 of 8"]
    costs = list(frame["usd_per_1k"])
    assert costs[0] < costs[1] < costs[2] and costs[3] == costs[0]  # reranking costs no tokens
    assert frame["added_ms"].iloc[3] > 0 and (frame["added_ms"].iloc[:3] == 0).all()
    assert frame["context_tokens"].iloc[2] == pytest.approx(4 * frame["context_tokens"].iloc[0])
    rec = tradeoff.recommend(share=0.5)
    assert rec.cost_name == "usd_per_1k" and rec.value >= 0.5 * rec.best_value
    with pytest.raises(ValueError, match=r"depth=5 was not studied; choose one of \[4, 8\]"):
        evaluation.context_tradeoff(rerank, depth=5)
    assert len(plots.context_tradeoff_figure(tradeoff).data) == 1 + 4


def test_rerank_figures(rerank):
    depth = plots.rerank_depth_figure(rerank)
    assert [t.name for t in depth.data] == ["no reranker", "mmr", "no reranker", "mmr"]
    scatter = plots.rerank_scatter_figure(rerank, 8)
    assert sum(scatter.data[1].customdata) == rerank.queries  # every query drawn, equal points merged
    with pytest.raises(ValueError, match="depth=3 was not studied"):
        plots.rerank_scatter_figure(rerank, 3)


def test_rerank_study_needs_a_reranker(tiny):
    with pytest.raises(ValueError, match="rerankers is empty"):
        evaluation.rerank_study(tiny, {})


# --- routing and costs -------------------------------------------------------------------------------


def test_routing_study_traces_the_curve_and_gives_a_routing_mix():
    study = evaluation.routing_study(routers=("rules",), test_share=0.4, seed=0)
    assert study.train + study.test == 276 and set(study.curves) == {"rules"}
    name, point = study.recommend(0.9)
    assert name == "rules" and point.quality_retained >= 0.9
    mix = study.routing_mix("rules", 0.9)
    assert math.isclose(sum(mix.values()), 1.0) and set(mix) <= set(study.tiers)
    frame = study.to_frame()
    assert set(frame["router"]) == {"rules"} and frame["cost_share"].max() == pytest.approx(1.0)
    figure = plots.routing_curve_figure(study)
    assert [t.name for t in figure.data] == ["rules", "random routing"]
    with pytest.raises(ValueError, match=r"unknown router 'learned'; this study has \['rules'\]"):
        study.routing_mix("learned")
    with pytest.raises(ValueError, match=r"choose from \['rules', 'learned', 'retrieval'\]"):
        evaluation.routing_study(routers=("oracle",))


def test_lever_summary_and_waterfall_follow_the_breakdown():
    workload = Workload(system_tokens=1500, tool_tokens=3000, prompt_cache_hit_rate=0.9, batch_share=0.5,
                        response_cache_hit_rate=0.2, routing_mix={"claude-haiku-4-5": 0.5, "claude-opus-4-5": 0.5},
                        baseline_model="claude-opus-4-5")
    month = monthly_cost(PipelineConfig(), workload)
    text = evaluation.lever_summary(month)
    order = sorted(month.savings, key=lambda lever: -month.savings[lever])
    positions = [text.index(f"  {lever} ") for lever in order]
    assert positions == sorted(positions) and f"${month.total:,.2f}" in text
    figure = plots.cost_waterfall_figure(month)
    bars = figure.data[0]
    assert list(bars.measure) == ["absolute", "relative", "relative", "relative", "relative", "total"]
    assert bars.y[0] == round(month.naive_total, 2) and bars.y[-1] == round(month.total, 2)
    assert sum(bars.y[1:-1]) == pytest.approx(-sum(month.savings.values()), abs=0.05)


def test_chunk_figures(tiny):
    study = evaluation.chunk_size_study(tiny, methods=("fixed",), sizes=(8, 64), overlaps=(0, 4), base=BM25, k=2)
    figure = plots.chunk_size_figure(study, "span_iou@2")
    assert [t.name for t in figure.data] == ["fixed", "fixed (overlap 4)"]
    assert list(figure.data[0].x) == [8, 64]
    with pytest.raises(ValueError, match="no setting of the study reports 'span_iou@5'"):
        plots.chunk_size_figure(study, "span_iou@5")
    assert len(plots.chunk_cost_figure(study, "span_iou@2").data) == 1 + 4
