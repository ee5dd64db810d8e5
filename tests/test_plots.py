"""Figures and tables from real runs: BM25 on Cranfield and on the span-annotated chunking set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench import plots
from workbench.config import ChunkingConfig, PipelineConfig, RetrievalConfig
from workbench.costs import Workload, cost_per_query, monthly_cost
from workbench.experiment import build_pipeline, run_experiment

BM25 = PipelineConfig(name="bm25", chunking=ChunkingConfig(method="none"), retrieval=RetrievalConfig(kind="bm25"))
# Only the best document counts: a much weaker ranking on the same queries.
TOP1 = PipelineConfig(name="top1", chunking=ChunkingConfig(method="none"),
                      retrieval=RetrievalConfig(kind="bm25", k=1))
WORKLOAD = Workload(system_tokens=5000, chunk_tokens=300, queries_per_day=2000, days_per_month=30,
                    prompt_cache_hit_rate=0.5)


@pytest.fixture(scope="module")
def results(cranfield):
    qids = cranfield.evaluated_queries[:40]
    return {"1. bm25": run_experiment(BM25, cranfield, query_ids=qids),
            "2. top1": run_experiment(TOP1, cranfield, query_ids=qids),
            "3. bm25 again": run_experiment(BM25, cranfield, query_ids=qids)}


def test_metric_summary_means_intervals_and_significance(results):
    summary = plots.metric_summary(results, ["ndcg@10", "recall@100"], n_resamples=1000)
    assert list(summary["config"].unique()) == list(results)
    for r in summary.itertuples():
        assert r.mean == pytest.approx(results[r.config].aggregates[r.metric])
        assert r.ci_low <= r.mean <= r.ci_high
        assert r.n == 40
    base = summary[summary["config"] == "1. bm25"]
    assert base["diff"].isna().all() and not base["significant"].any()
    same = summary[summary["config"] == "3. bm25 again"]
    assert (same["diff"] == 0).all() and not same["significant"].any()
    worse = summary[(summary["config"] == "2. top1") & (summary["metric"] == "recall@100")].iloc[0]
    assert worse["diff"] < 0 and worse["significant"]
    display = plots.summary_display(summary)
    assert display.loc["2. top1", "recall@100"].endswith("▼")
    assert not display.loc["3. bm25 again", "recall@100"].endswith(("▲", "▼"))
    assert display.loc["1. bm25", "ndcg@10"].startswith(f"{base.iloc[0]['mean']:.3f} [")


def test_primary_metric_prefers_ndcg_then_span_iou(results):
    assert plots.primary_metric(results) == "ndcg@10"


def test_cost_per_1k_is_stacked_by_component_and_sums_to_the_total():
    per_query = {"a": cost_per_query(BM25, WORKLOAD),
                 "b": cost_per_query(PipelineConfig(name="b", chunking=ChunkingConfig(method="none")), WORKLOAD)}
    fig = plots.cost_per_1k_figure(per_query)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == list(plots.COST_COMPONENTS.values())
    assert fig.layout.barmode == "stack"
    for j, label in enumerate(per_query):
        stacked = sum(t.y[j] for t in bars)
        assert stacked == pytest.approx(per_query[label].total * 1000)
    assert bars[0].y[0] == pytest.approx(per_query["a"].uncached_input * 1000)
    assert per_query["a"].cache_read > 0  # the 5,000-token prefix is cached: that bar is not empty
    with pytest.raises(ValueError, match="per-query breakdowns"):
        plots.cost_per_1k_figure({"a": monthly_cost(BM25, WORKLOAD)})


def test_monthly_cost_figure_uses_the_workloads_volume():
    monthly = {"a": monthly_cost(BM25, WORKLOAD)}
    fig = plots.monthly_cost_figure(monthly)
    assert "60,000 queries" in fig.layout.title.text
    assert sum(t.y[0] for t in fig.data if t.type == "bar") == pytest.approx(monthly["a"].total)
    with pytest.raises(ValueError, match="monthly breakdowns"):
        plots.monthly_cost_figure({"a": cost_per_query(BM25, WORKLOAD)})


def test_quality_cost_marks_the_pareto_frontier():
    quality = {"cheap": 0.30, "dominated": 0.25, "best": 0.50}
    cost = {"cheap": 1.0, "dominated": 2.0, "best": 3.0}
    fig = plots.quality_cost_figure(quality, cost, metric="ndcg@10")
    frontier = next(t for t in fig.data if t.name == "Pareto frontier")
    assert list(frontier.x) == [1.0, 3.0] and list(frontier.y) == [0.30, 0.50]
    symbols = {t.text[0]: t.marker.symbol for t in fig.data if t.mode == "markers+text"}
    assert symbols == {"cheap": "circle", "dominated": "circle-open", "best": "circle"}
    with pytest.raises(ValueError, match="different configs"):
        plots.quality_cost_figure(quality, {"cheap": 1.0}, metric="ndcg@10")


def test_latency_percentiles_per_stage(results):
    table = plots.latency_percentiles(results)
    assert set(table["stage"]) == {"retrieve", "total"}
    row = table[(table["config"] == "1. bm25") & (table["stage"] == "total")].iloc[0]
    values = [1000 * r.latency_s for r in results["1. bm25"].rows]
    assert row["p50"] == pytest.approx(np.percentile(values, 50))
    assert row["p50"] <= row["p95"] <= row["p99"] and row["n"] == 40
    fig = plots.latency_figure(table)
    assert [a.text for a in fig.layout.annotations] == ["retrieve", "total"]
    assert {t.name for t in fig.data} == set(results)
    assert list(fig.data[0].x) == ["P50", "P95", "P99"]
    with pytest.raises(ValueError, match="no latencies"):
        plots.latency_figure(table.iloc[0:0])


def test_highlight_html_escapes_merges_and_clips():
    text = "a <b> & c d e"
    assert plots.highlight_html(text, 100, []) == "a &lt;b&gt; &amp; c d e"
    # spans in document offsets; the chunk starts at 100; overlapping spans merge; outside ones vanish
    out = plots.highlight_html(text, 100, [(102, 104), (103, 107), (90, 101), (200, 210)])
    assert out == "<mark>a</mark> <mark>&lt;b&gt; &amp;</mark> c d e"


def test_drilldown_frames_mark_reference_spans_and_missed_documents(chunking_set):
    config = PipelineConfig(name="rec", chunking=ChunkingConfig(method="recursive", size=128, tokenizer="whitespace"),
                            retrieval=RetrievalConfig(kind="bm25"))
    qids = chunking_set.evaluated_queries[:5]
    result = run_experiment(config, chunking_set, query_ids=qids)
    chunks = {c.id: c for c in build_pipeline(config, chunking_set).chunks}
    marked = 0
    for row in result.rows:
        hits = plots.hit_frame(row, chunks, chunking_set, k=5)
        assert list(hits["rank"]) == list(range(1, len(hits) + 1))
        assert list(hits["score"]) == list(row.scores[:5])
        for h in hits.itertuples():
            assert (h.reference_chars > 0) == ("<mark>" in h.html)
            marked += h.reference_chars > 0
        relevant = plots.relevant_frame(row, chunking_set)
        assert set(relevant["doc_id"]) == {d for d, g in chunking_set.qrels[row.query_id].items() if g > 0}
        for r in relevant.itertuples():
            assert r.found == (r.doc_id in row.retrieved)
            assert math.isnan(r.rank) or row.retrieved[int(r.rank) - 1] == r.doc_id
    assert marked > 0  # BM25 finds some reference text in five questions
