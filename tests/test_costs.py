"""Prices (`workbench.prices`), token estimates (`workbench.tokens`) and the cost model, by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from workbench.config import ChunkingConfig, GenerationConfig, PipelineConfig
from workbench.costs import LEVERS, Workload, cost_per_query, monthly_cost
from workbench.prices import PriceError, load_price_sheet, load_prices, price_of, usage_cost
from workbench.tokens import calibrate, calibration_factor, count_tokens, estimate_tokens
from workbench.generation import SYSTEM_PROMPT
from workbench.io import DATA_DIR
from workbench.types import Usage


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("WORKBENCH_PRICES", raising=False)
    monkeypatch.delenv("WORKBENCH_TOKEN_CALIBRATION", raising=False)


def pipeline(model="claude-sonnet-4-5", caching=True, ttl="5m") -> PipelineConfig:
    return PipelineConfig(generation=GenerationConfig(model=model, prompt_caching=caching, cache_ttl=ttl))


# --- the price table --------------------------------------------------------------------------


def test_bundled_prices_are_the_list_prices_with_date_and_source():
    sheet = load_price_sheet()
    assert sheet.date and "Anthropic" in sheet.source
    table = {m: (p.input, p.cache_write_5m, p.cache_write_1h, p.cache_read, p.output, p.batch_discount)
             for m, p in sheet.prices.items()}
    assert table == {
        "claude-haiku-4-5": (1, 1.25, 2, 0.10, 5, 0.5),
        "claude-sonnet-4-5": (3, 3.75, 6, 0.30, 15, 0.5),
        "claude-opus-4-5": (5, 6.25, 10, 0.50, 25, 0.5),
    }


def test_users_override_and_add_models_through_workbench_prices(tmp_path, monkeypatch):
    text = (DATA_DIR / "prices.toml").read_text() + (
        "\n[models.my-model]\ninput = 0.5\ncache_write_5m = 0.6\ncache_write_1h = 1.0\n"
        "cache_read = 0.05\noutput = 2.0\nbatch_discount = 0.5\n"
    )
    path = tmp_path / "prices.toml"
    path.write_text(text)
    monkeypatch.setenv("WORKBENCH_PRICES", str(path))
    assert load_prices()["my-model"].output == 2.0 and len(load_prices()) == 4


@pytest.mark.parametrize(
    "body, message",
    [
        (None, "does not exist; fix WORKBENCH_PRICES"),
        ("date = [", "not valid TOML"),
        ('date = "x"\n', r"no \[models.<id>\] tables"),
        ("[models.m]\ninput = 1\n", r"models.m .*missing \['output'"),
        ("[models.m]\ninput = 1\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = -1\n"
         "batch_discount = 0.5\n", r"cache_read=-1 of model 'm' must be a number >= 0"),
        ("[models.m]\ninput = 1\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 1\n"
         "batch_discount = 0.5\nbogus = 1\n", r"unknown \['bogus'\]"),
    ],
)
def test_bad_price_tables_say_what_to_fix(tmp_path, body, message):
    path = tmp_path / "prices.toml"
    if body is not None:
        path.write_text(body)
    with pytest.raises(PriceError, match=message):
        load_prices(path)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(PriceError, match=r"'gpt-9'.*'claude-haiku-4-5', 'claude-opus-4-5', 'claude-sonnet-4-5'"):
        price_of("gpt-9")


# --- cost of one call, by hand --------------------------------------------------------------------

USAGE = Usage(model="x", input_tokens=1000, cache_write_tokens=2000, cache_read_tokens=5000, output_tokens=500)


@pytest.mark.parametrize(
    "model, ttl, batch, usd",
    [
        ("claude-haiku-4-5", "5m", False, 0.0065),  # 1000*1 + 2000*1.25 + 5000*0.1 + 500*5 = 6500
        ("claude-haiku-4-5", "1h", False, 0.008),  # 1000 + 2000*2 + 500 + 2500 = 8000
        ("claude-haiku-4-5", "5m", True, 0.00325),  # half of 6500
        ("claude-sonnet-4-5", "5m", False, 0.0195),  # 3000 + 7500 + 1500 + 7500
        ("claude-opus-4-5", "5m", False, 0.0325),  # 5000 + 12500 + 2500 + 12500
    ],
)
def test_usage_cost_by_hand(model, ttl, batch, usd):
    assert usage_cost(USAGE, price_of(model), batch=batch, cache_ttl=ttl) == pytest.approx(usd)


def test_usage_cost_rejects_an_unknown_ttl():
    with pytest.raises(ValueError, match=r"cache_ttl '10m'"):
        usage_cost(USAGE, price_of("claude-haiku-4-5"), cache_ttl="10m")


# --- the cost model, by hand --------------------------------------------------------------------


def test_plain_workload_by_hand():
    w = Workload(queries_per_day=1000, system_tokens=2000, chunk_tokens=400, k=5, query_tokens=50,
                 output_tokens=300)
    b = cost_per_query(pipeline(caching=False), w)
    # input (2000 + 5*400 + 50) * $3 + output 300 * $15 = 12150 + 4500 per million
    assert b.uncached_input == pytest.approx(0.01215) and b.output == pytest.approx(0.0045)
    assert b.total == pytest.approx(0.01665) == pytest.approx(b.naive_total)
    assert all(v == pytest.approx(0) for v in b.savings.values())
    month = monthly_cost(pipeline(caching=False), w)
    assert month.unit == "month" and month.queries == 30_000 and month.total == pytest.approx(499.5)
    assert b.token_sources == {"system_tokens": "given", "chunk_tokens": "given"}


def test_prompt_caching_by_hand():
    w = Workload(system_tokens=3000, chunk_tokens=500, k=4, query_tokens=40, history_turns=2, tokens_per_turn=150,
                 output_tokens=250, prompt_cache_hit_rate=0.9)
    b = cost_per_query(pipeline(), w)
    # variable 4*500 + 2*150 + 40 = 2340; prefix 3000 written by 10%, read by 90%
    assert b.uncached_input == pytest.approx(2340 * 3 / 1e6)
    assert b.cache_write == pytest.approx(0.1 * 3000 * 3.75 / 1e6)
    assert b.cache_read == pytest.approx(0.9 * 3000 * 0.30 / 1e6)
    assert b.total == pytest.approx(12705 / 1e6)
    assert b.naive_total == pytest.approx(19770 / 1e6)  # (3000 + 2340) * 3 + 250 * 15
    assert b.savings["prompt_caching"] == pytest.approx(7065 / 1e6)
    assert b.tokens == {"prefix": 3000, "variable": 2340, "output": 250}


def test_every_lever_together_by_hand():
    w = Workload(queries_per_day=2000, system_tokens=5000, chunk_tokens=300, k=5, query_tokens=20, output_tokens=200,
                 prompt_cache_hit_rate=0.8, batch_share=0.5, response_cache_hit_rate=0.2,
                 routing_mix={"claude-haiku-4-5": 0.7, "claude-sonnet-4-5": 0.3})
    b = cost_per_query(pipeline(ttl="1h"), w)
    # per request, variable 1520: haiku 1520 + 0.2*5000*2 + 0.8*5000*0.1 + 200*5 = 4920;
    # sonnet 4560 + 6000 + 1200 + 3000 = 14760; mix 7872; x0.75 batch; x0.8 response cache
    assert b.total == pytest.approx(4723.2 / 1e6)
    assert (b.uncached_input, b.cache_write, b.cache_read, b.output) == pytest.approx(
        (1459.2 / 1e6, 1920 / 1e6, 384 / 1e6, 960 / 1e6))
    assert b.naive_total == pytest.approx(22560 / 1e6)  # all on sonnet, nothing cached
    assert b.savings == pytest.approx({"routing": 10528 / 1e6, "prompt_caching": 4160 / 1e6,
                                       "batch": 1968 / 1e6, "response_cache": 1180.8 / 1e6})
    assert b.naive_total - sum(b.savings.values()) == pytest.approx(b.total)
    assert b.by_model == pytest.approx({"claude-haiku-4-5": 0.7 * 4920 * 0.6 / 1e6,
                                        "claude-sonnet-4-5": 0.3 * 14760 * 0.6 / 1e6})
    assert monthly_cost(pipeline(ttl="1h"), w).total == pytest.approx(283.392)
    frame = b.to_frame()
    assert list(frame["item"]) == ["uncached_input", "cache_write", "cache_read", "output", "total",
                                   "naive_total", *LEVERS]
    assert frame.loc[frame["item"] == "total", "usd"].item() == pytest.approx(b.total)


def test_the_batch_share_comes_from_the_config_unless_the_workload_overrides_it():
    w = Workload(system_tokens=0, chunk_tokens=100, k=1, query_tokens=0, output_tokens=100)
    full = cost_per_query(pipeline(), w).total  # sonnet: 100 * 3 + 100 * 15 = 1800 per million
    batched = PipelineConfig(generation=GenerationConfig(model="claude-sonnet-4-5", batch_share=0.5))
    b = cost_per_query(batched, w)
    assert full == pytest.approx(1800 / 1e6)
    assert b.total == pytest.approx(full * 0.75) and b.savings["batch"] == pytest.approx(full * 0.25)
    assert cost_per_query(batched, replace(w, batch_share=0.0)).total == pytest.approx(full)
    assert cost_per_query(pipeline(), replace(w, batch_share=1.0)).total == pytest.approx(full * 0.5)


def test_a_prefix_below_the_cacheable_minimum_is_not_cached():
    w = Workload(system_tokens=1000, chunk_tokens=100, k=1, query_tokens=0, output_tokens=0,
                 prompt_cache_hit_rate=0.9)
    b = cost_per_query(pipeline(model="claude-haiku-4-5"), w)
    assert b.cache_read == b.cache_write == 0 and b.uncached_input == pytest.approx(1100 / 1e6)
    assert b.savings["prompt_caching"] == 0 and "below the 4096-token minimum" in b.notes[0]


def test_cache_writes_never_read_are_a_negative_saving():
    w = Workload(system_tokens=2000, chunk_tokens=0, k=0, query_tokens=0, output_tokens=0)
    b = cost_per_query(pipeline(), w)  # sonnet, min 1024, hit rate 0: every request writes
    assert b.savings["prompt_caching"] == pytest.approx(-2000 * 0.75 / 1e6)


def test_derived_token_counts_are_labelled_estimates():
    config = PipelineConfig(chunking=ChunkingConfig(size=256, tokenizer="whitespace"),
                            generation=GenerationConfig(context_chunks=3))
    b = cost_per_query(config, Workload(query_tokens=0, output_tokens=0))
    assert b.token_sources == {"system_tokens": "estimate", "chunk_tokens": "estimate"}
    assert b.tokens["prefix"] == estimate_tokens(SYSTEM_PROMPT)
    assert b.tokens["variable"] == pytest.approx(3 * 256 * 1.24)
    with pytest.raises(ValueError, match="set Workload.chunk_tokens"):
        cost_per_query(PipelineConfig(chunking=ChunkingConfig(method="none")), Workload())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"routing_mix": {"claude-haiku-4-5": 0.5}}, "sum to 0.5, not 1"),
        ({"batch_share": 1.5}, r"batch_share=1.5 must lie in \[0, 1\]"),
        ({"output_tokens": -1}, "output_tokens=-1 must be >= 0"),
    ],
)
def test_bad_workloads_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Workload(**kwargs)


def test_unpriced_model_in_the_mix_is_an_error():
    with pytest.raises(PriceError, match="no price for model 'llama'"):
        cost_per_query(pipeline(), Workload(system_tokens=0, chunk_tokens=0, routing_mix={"llama": 1.0}))


# --- token estimates ----------------------------------------------------------------------------


def test_estimates_use_the_legacy_tokenizer_times_the_calibration(monkeypatch):
    text = (DATA_DIR / "chunking" / "corpora" / "state_of_the_union.md").read_text(encoding="utf-8")
    assert estimate_tokens(text) == 11_535  # the figure in data/claude_tokenizer/PROVENANCE.md
    assert calibration_factor() == 1.0
    monkeypatch.setenv("WORKBENCH_TOKEN_CALIBRATION", "1.5")
    assert estimate_tokens(text) == round(11_535 * 1.5)
    monkeypatch.setenv("WORKBENCH_TOKEN_CALIBRATION", "-2")
    with pytest.raises(ValueError, match="WORKBENCH_TOKEN_CALIBRATION='-2'"):
        estimate_tokens(text)


def test_offline_counts_are_marked_as_estimates():
    count = count_tokens("The quick brown fox jumps over the lazy dog.")
    assert not count.counted and count.tokens == estimate_tokens("The quick brown fox jumps over the lazy dog.")
    assert count_tokens("").tokens == 0


def test_calibrate_recovers_a_known_factor():
    texts = ["The quick brown fox.", "Prompt caching makes repeated prefixes cheap.", "Hello"]
    legacy = [estimate_tokens(t) for t in texts]
    fit = calibrate(texts, [round(n * 1.25 * 4) for n in legacy])  # integer counts, factor 5
    assert fit.factor == pytest.approx(5.0) and fit.max_abs_error == pytest.approx(0) and fit.n == 3
    with pytest.raises(ValueError, match="3 texts but 2 counts"):
        calibrate(texts, [1, 2])
