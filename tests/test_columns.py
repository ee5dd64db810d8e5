"""workbench.columns: the app's field list derived from the config types and registries, widget
values in and out of a config, the diff against config 1, and the pricing fallback."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from workbench import columns
from workbench.config import ConfigError, PipelineConfig, choices, config_hash, field_bounds, load_config
from workbench.registry import REGISTRIES, Registry
from workbench.types import Usage

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.toml"))


def scalar_paths() -> set[str]:
    """Every field of every section typed bool, int, float, str or Literal, read from the dataclasses here."""
    hints = typing.get_type_hints(PipelineConfig)
    found = set()
    for section in (f.name for f in dataclasses.fields(PipelineConfig) if dataclasses.is_dataclass(hints[f.name])):
        for name, hint in typing.get_type_hints(hints[section]).items():
            if hint in (bool, int, float, str) or typing.get_origin(hint) is typing.Literal:
                found.add(f"{section}.{name}")
    return found


def test_every_scalar_config_field_is_offered_once_with_the_main_ones_first():
    fields = columns.config_fields()
    paths = [f.path for f in fields]
    assert len(paths) == len(set(paths)) and set(paths) == scalar_paths()
    assert paths[: len(columns.MAIN)] == list(columns.MAIN)
    assert all(f.main == (f.path in columns.MAIN) for f in fields)
    by_path = {f.path: f for f in fields}
    assert "retrieval.backend" in by_path and not by_path["retrieval.backend"].main  # a field added by its stage


def test_kinds_come_from_the_registries_and_models_from_the_price_table():
    by_path = {f.path: f for f in columns.config_fields()}
    for path, registry in REGISTRIES.items():
        assert by_path[path].widget == "select" and by_path[path].options == registry.choices()
    assert "none" in by_path["reranking.kind"].options  # a kind that builds nothing is still a choice
    assert by_path["generation.model"].options == tuple(columns.price_models()) and "claude-haiku-4-5" in \
        by_path["generation.model"].options
    assert by_path["chunking.tokenizer"].options == choices("chunking.tokenizer")  # a Literal's options


def test_a_kind_registered_at_run_time_is_offered_at_once(monkeypatch):
    old = REGISTRIES["reranking.kind"]
    new = Registry("reranking.kind", {**{k: old.target(k) for k in old}, "echo": "my_package.echo:EchoReranker"},
                   extra=old.extra)
    before = {f.path: f for f in columns.config_fields()}["reranking.kind"].options
    monkeypatch.setitem(REGISTRIES, "reranking.kind", new)
    after = {f.path: f for f in columns.config_fields()}["reranking.kind"].options
    assert "echo" not in before and "echo" in after


def test_number_widgets_take_their_ranges_from_the_configs():
    by_path = {f.path: f for f in columns.config_fields()}
    size = by_path["chunking.size"]
    assert (size.widget, size.low, size.step) == ("int", 1, 32) and size.high >= 8192
    weight = by_path["retrieval.dense_weight"]
    assert (weight.widget, weight.low, weight.high) == ("slider", 0.0, 1.0)
    assert all(isinstance(x, float) for x in (weight.low, weight.high, weight.step))
    timeout = by_path["generation.timeout_s"]
    assert timeout.widget == "float" and timeout.low is None  # open at 0: a number field, no slider
    assert timeout.high == field_bounds("generation.timeout_s").le
    assert by_path["embedding.normalize"].widget == "bool" and by_path["embedding.model"].widget == "text"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_widget_values_round_trip_every_bundled_config(path):
    config = load_config(path)
    again = columns.column_config(PipelineConfig(), config.name, columns.widget_values(config))
    assert again == config and config_hash(again) == config_hash(config)


def test_fields_that_are_checked_together_change_together():
    base = PipelineConfig()  # chunking size 256, overlap 0
    values = {**columns.widget_values(base), "chunking.size": 64, "chunking.overlap": 32}
    assert columns.column_config(base, "x", values).chunking.overlap == 32
    values = {**columns.widget_values(dataclasses.replace(base, chunking=dataclasses.replace(
        base.chunking, size=512, overlap=300))), "chunking.size": 128, "chunking.overlap": 16}
    assert columns.column_config(base, "x", values).chunking.size == 128  # overlap 300 >= 128 never seen alone
    with pytest.raises(ConfigError, match="chunking.overlap=64 must be >= 0 and < chunking.size=64"):
        columns.column_config(base, "x", {"chunking.size": 64, "chunking.overlap": 64})
    with pytest.raises(ConfigError, match="reranking"):
        columns.column_config(base, "x", {"reranking.kind": "nope"})


def test_the_diff_names_every_differing_field_and_not_the_name():
    a = load_config(CONFIGS[0])
    b = dataclasses.replace(a, name="other", retrieval=dataclasses.replace(a.retrieval, k=7),
                            routing=dataclasses.replace(a.routing, tiers=("claude-haiku-4-5",)))
    assert columns.config_diff(a, b) == [("retrieval.k", a.retrieval.k, 7),
                                         ("routing.tiers", a.routing.tiers, ("claude-haiku-4-5",))]
    assert columns.config_diff(a, dataclasses.replace(a, name="renamed")) == []


def test_an_answer_without_a_provider_cost_is_priced_from_its_tokens():
    from workbench.prices import price_of, usage_cost

    usage = Usage(model="claude-haiku-4-5", input_tokens=1000, output_tokens=200)
    assert columns.answer_cost(usage, "claude-haiku-4-5") == pytest.approx(usage_cost(usage, price_of("claude-haiku-4-5")))
    assert columns.answer_cost(usage, "claude-haiku-4-5") > 0
    assert columns.answer_cost(usage, "extractive") == 0.0  # no price: not made up
    billed = dataclasses.replace(usage, cost_usd=0.5)
    assert columns.answer_cost(billed, "claude-haiku-4-5") == 0.5  # the provider's figure wins


def test_mean_chunk_tokens_is_the_mean_estimate_of_the_chunks():
    from workbench.tokens import estimate_tokens
    from workbench.types import Chunk

    chunks = [Chunk(id=f"d#{i}", doc_id="d", text="word " * (10 * (i + 1)), start=0, end=10) for i in range(3)]
    assert columns.mean_chunk_tokens(chunks) == round(sum(estimate_tokens(c.text) for c in chunks) / 3)
