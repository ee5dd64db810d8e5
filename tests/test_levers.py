"""Cost levers measured on traffic: prompt caching from real usage, cache rates and monthly cost from
traces, and the measured/assumed labels the cost model's waterfall carries."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from anthropic_server import tokens  # noqa: E402

from workbench import tracing  # noqa: E402
from workbench.config import GenerationConfig, PipelineConfig, ResponseCacheConfig, replace_path  # noqa: E402
from workbench.costs import Workload, cost_per_query  # noqa: E402
from workbench.datasets import Dataset  # noqa: E402
from workbench.experiment import build_pipeline  # noqa: E402
from workbench.generation import AnthropicGenerator  # noqa: E402
from workbench.levers import break_even_reads, levers, prompt_cache_summary  # noqa: E402
from workbench.prices import load_prices, price_of  # noqa: E402
from workbench.tracing.metrics import measured_cache_rates, monthly_projection  # noqa: E402
from workbench.types import Chunk, Document, Hit, Usage  # noqa: E402

CONTEXT = [Hit(chunk=Chunk(id="d:1", doc_id="d", text="Everest is 8,849 m high.", start=0, end=24), score=1, rank=1)]


@pytest.fixture
def api(anthropic_api):
    return anthropic_api


def test_the_request_puts_the_static_part_first_marked_and_a_run_measures_its_reads(api):
    gen = AnthropicGenerator(GenerationConfig(kind="anthropic", base_url=api.url))
    answers = [gen.generate(q, CONTEXT) for q in ("How high is Everest?", "Is Everest high?", "Height of Everest?")]
    body = api.requests[0].body
    first = body["system"][0]
    assert "tools" not in body and first["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert all("cache_control" not in b for b in body["system"][1:])  # nothing that varies is marked
    assert [b["type"] for b in body["system"]] == ["text", "text"] and "Context passages" in body["system"][1]["text"]
    summary = prompt_cache_summary([a.usage for a in answers])
    prefix = tokens(first["text"])
    assert (summary.cache_write_tokens, summary.cache_read_tokens) == (prefix, 2 * prefix)
    assert summary.requests == 3 and summary.requests_writing == 1 and summary.requests_reading == 2
    assert summary.hit_rate == pytest.approx(2 / 3) and summary.reads_per_write == 2.0
    assert summary.cost_usd == pytest.approx(sum(a.usage.cost_usd for a in answers))
    haiku = price_of("claude-haiku-4-5")
    saved = 2 * prefix * (haiku.input - haiku.cache_read) - prefix * (haiku.cache_write("5m") - haiku.input)
    assert summary.saving_usd == pytest.approx(saved / 1e6)
    assert summary.break_even_reads == pytest.approx(0.25 / 0.9) == break_even_reads(haiku)  # list prices
    with pytest.raises(ValueError, match="no counted usage"):
        prompt_cache_summary([Usage(model="claude-haiku-4-5", input_tokens=10)])


def test_cache_rates_and_monthly_cost_come_from_the_traces(api, tmp_path):
    docs = (Document(id="e", text="Everest is 8,849 metres high."), Document(id="k", text="K2 is 8,611 metres high."))
    config = PipelineConfig(name="levers")
    for path, value in {"retrieval.kind": "bm25", "retrieval.k": 2, "chunking.method": "none",
                        "generation.kind": "anthropic", "generation.base_url": api.url}.items():
        config = replace_path(config, path, value)
    config = replace_path(config, "response_cache", ResponseCacheConfig(mode="exact", path=str(tmp_path / "r.sqlite")))
    pipeline = build_pipeline(config, Dataset(name="l", documents=docs, queries={"q": "x"}))
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    try:
        with tracing.tags(user="ada", feature="chat"):
            pipeline.answer("How high is Everest?")
            pipeline.answer("How high is K2?")
        with tracing.tags(user="bob", feature="chat"):
            pipeline.answer("how high is everest?")  # served from the response cache: no call, no cost
        assert tracing.flush()
    finally:
        tracing.disable_tracing()
    rates = measured_cache_rates(store)
    assert rates.response_cache_lookups == 3 and rates.response_cache_hit_rate == pytest.approx(1 / 3)
    assert rates.prompt_cache_requests == 2 and rates.prompt_cache_hit_rate == 0.5  # the second call read it
    spent = sum(r.cost_usd for r in store.traces())
    assert spent > 0
    now = min(r.started_at for r in store.traces()) + dt.timedelta(days=2)
    by_user = monthly_projection(store, "user", budget_usd=spent * 10, now=now)
    assert [p.tag for p in by_user] == ["ada", "bob"] and by_user[1].spent_usd == 0.0
    assert by_user[0].days_observed == pytest.approx(2.0, abs=1e-3)
    assert by_user[0].monthly_usd == pytest.approx(spent / 2 * 30, rel=1e-3) and by_user[0].over_budget
    (everything,) = monthly_projection(store, budget_usd=spent * 100, now=now)
    assert everything.tag == "all" and everything.requests == 3 and not everything.over_budget
    soon = monthly_projection(store, "feature", now=min(r.started_at for r in store.traces()))
    assert soon[0].days_observed == 1.0  # minutes of traffic count as one day, not a month's worth
    with pytest.raises(ValueError, match="budget_usd=-1"):
        monthly_projection(store, budget_usd=-1)
    with pytest.raises(ValueError, match="unknown tag 'team'"):
        monthly_projection(store, "team")  # type: ignore[arg-type]


def test_levers_label_measured_and_assumed_and_feed_the_cost_model():
    typed = Workload(prompt_cache_hit_rate=0.8, response_cache_hit_rate=0.0)
    workload, figures = levers(typed, response_cache_hit_rate=0.27, response_cache_from="query log, threshold 0.85",
                               prompt_cache_hit_rate=0.5, prompt_cache_from="traces")
    assert {k: f.source for k, f in figures.items()} == {
        "routing": "assumed", "prompt_caching": "measured", "batch": "assumed", "response_cache": "measured"}
    assert figures["response_cache"].value == 0.27 and "threshold 0.85" in figures["response_cache"].detail
    assert "not measured" in figures["batch"].detail
    assert workload.response_cache_hit_rate == 0.27 and workload.prompt_cache_hit_rate == 0.5
    config = PipelineConfig()
    measured, assumed = cost_per_query(config, workload), cost_per_query(config, typed)
    assert measured.savings["response_cache"] > assumed.savings["response_cache"] == 0.0
    same, labels = levers(typed)
    assert same == typed and all(f.source == "assumed" for f in labels.values())
    with pytest.raises(ValueError, match="needs its source"):
        levers(typed, batch_share=0.5)
    with pytest.raises(ValueError, match="batch_share"):
        levers(typed, batch_share=1.5, batch_from="run")
    assert load_prices()  # the price table the figures use


@pytest.mark.slow  # the Streamlit page
def test_the_traces_page_warns_when_a_projection_crosses_the_budget(api, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    gen_config = GenerationConfig(kind="anthropic", base_url=api.url)
    config = replace_path(replace_path(replace_path(PipelineConfig(name="page"), "retrieval.kind", "bm25"),
                                       "chunking.method", "none"), "generation", gen_config)
    pipeline = build_pipeline(config, Dataset(name="p", documents=(Document(id="e", text="Everest is high."),),
                                              queries={"q": "x"}))
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    try:
        with tracing.tags(user="ada", feature="chat"):
            pipeline.answer("How high is Everest?")
        assert tracing.flush()
    finally:
        tracing.disable_tracing()
    monkeypatch.setenv("WORKBENCH_STORE", str(store.path))
    page = AppTest.from_file(str(Path(__file__).parent.parent / "pages" / "1_Traces.py"), default_timeout=60).run()
    assert not page.exception and not page.warning  # $100 a month is far above one request's cost
    page.number_input(key="traces_budget").set_value(0.0).run()
    assert not page.exception
    assert len(page.warning) == 1 and "Projected past the $0.00 monthly budget: ada $" in page.warning[0].value
