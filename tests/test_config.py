"""Configs: validation at the boundary, TOML round trips, stable hashes, dotted replacement."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from workbench.config import (
    ChunkingConfig,
    ConfigError,
    GenerationConfig,
    PipelineConfig,
    RerankingConfig,
    RetrievalConfig,
    config_hash,
    from_dict,
    load_config,
    replace_path,
    save_config,
)

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_bundled_configs_load_and_round_trip(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    assert config.name == path.stem
    save_config(config, tmp_path / "copy.toml")
    assert load_config(tmp_path / "copy.toml") == config


def test_required_example_configs_exist() -> None:
    assert {"bm25", "dense", "hybrid"} <= {p.stem for p in CONFIGS}


def test_hash_is_stable_ignores_name_and_changes_with_content() -> None:
    a = PipelineConfig(name="a")
    assert config_hash(a) == config_hash(PipelineConfig(name="b"))
    assert config_hash(a) == "%s" % config_hash(PipelineConfig())
    changed = replace_path(a, "chunking.size", 128)
    assert config_hash(changed) != config_hash(a)
    assert len(config_hash(a)) == 16


# Hashes of stored runs, computed before `generation.batch_share` existed: they must not move.
STORED_HASHES = {"defaults": "3ad5bae497335996", "bm25": "573e80ed9b7fc97d", "dense": "4247452c98450a66",
                 "hybrid": "5fc30ba89769f45f", "recursive-256": "3ad5bae497335996"}


@pytest.mark.parametrize("name", sorted(STORED_HASHES))
def test_hashes_of_existing_configs_do_not_change_when_a_field_is_added(name: str) -> None:
    config = PipelineConfig() if name == "defaults" else load_config(CONFIG_DIR / f"{name}.toml")
    assert config_hash(config) == STORED_HASHES[name]


def test_batch_share_round_trips_through_toml_and_counts_in_the_hash_when_set(tmp_path: Path) -> None:
    config = replace_path(load_config(CONFIG_DIR / "bm25.toml"), "generation.batch_share", 0.25)
    assert config.generation.batch_share == 0.25
    save_config(config, tmp_path / "batched.toml")
    assert "batch_share = 0.25" in (tmp_path / "batched.toml").read_text()
    assert load_config(tmp_path / "batched.toml").generation.batch_share == 0.25
    assert config_hash(config) != STORED_HASHES["bm25"]
    (tmp_path / "bad.toml").write_text("[generation]\nbatch_share = 2\n")
    with pytest.raises(ConfigError, match=r"generation.batch_share=2.0 must lie in \[0, 1\]"):
        load_config(tmp_path / "bad.toml")


def test_unknown_keys_are_rejected_with_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[retrieval]\nkind = "bm25"\nkk = 3\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['kk'\] in retrieval; known keys are .*'k'"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(PipelineConfig, {"chunkin": {}})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ChunkingConfig(size=100, overlap=100), r"overlap=100 must be >= 0 and < chunking.size=100"),
        (lambda: ChunkingConfig(method="sentences"), r"unknown chunking.method 'sentences'; choose one of \['fixed', 'none', 'recursive', 'semantic'\]"),
        (lambda: RetrievalConfig(k=0), r"retrieval.k must be positive, got 0"),
        (lambda: RetrievalConfig(kind="splade"), r"choose one of \['bm25', 'dense', 'hybrid'\]"),
        (lambda: RerankingConfig(kind="mmr", candidates=5, k=10), r"reranking.k=10 is larger than reranking.candidates=5"),
        (lambda: GenerationConfig(batch_share=1.5), r"generation.batch_share=1.5 must lie in \[0, 1\]"),
        (lambda: GenerationConfig(batch_share=-0.1), r"generation.batch_share=-0.1 must lie in \[0, 1\]"),
    ],
)
def test_bad_values_name_the_value_and_the_fix(make, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_wrong_types_and_bad_toml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"chunking.size must be int, got '256'"):
        from_dict(PipelineConfig, {"chunking": {"size": "256"}})
    (tmp_path / "broken.toml").write_text("[chunking\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_replace_path_rejects_unknown_fields_and_validates() -> None:
    config = PipelineConfig()
    assert replace_path(config, "retrieval.kind", "bm25").retrieval.kind == "bm25"
    with pytest.raises(ConfigError, match="has no field 'sizes'"):
        replace_path(config, "chunking.sizes", 3)
    with pytest.raises(ConfigError, match="overlap"):
        replace_path(replace_path(config, "chunking.overlap", 50), "chunking.size", 50)


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PipelineConfig().chunking.size = 3  # type: ignore[misc]


# --------------------------------------------------------------------- hostile values, by class

import math  # noqa: E402
import typing  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from workbench import config as config_module  # noqa: E402
from workbench.config import EmbeddingConfig, RoutingConfig, choices, field_bounds, loads  # noqa: E402
from workbench.registry import REGISTRIES, Registry  # noqa: E402
from workbench.sections import field_types  # noqa: E402
from workbench.validation import MAX_INT, bounds_of, check_token_pattern, shorten  # noqa: E402

SECTIONS = {f.name: field_types(PipelineConfig)[f.name] for f in dataclasses.fields(PipelineConfig)
            if dataclasses.is_dataclass(field_types(PipelineConfig)[f.name])}
NUMBERS = [(section, f.name, field_types(cls)[f.name]) for section, cls in SECTIONS.items()
           for f in dataclasses.fields(cls) if field_types(cls)[f.name] in (int, float)]
FLOATS = [(s, n) for s, n, t in NUMBERS if t is float]
INTS = [(s, n) for s, n, t in NUMBERS if t is int]


def build(section: str, name: str, value):
    return SECTIONS[section](**{name: value})


def test_every_number_field_declares_a_range_and_every_float_is_covered() -> None:
    assert len(FLOATS) >= 15 and len(INTS) >= 30  # the sweep below really covers the configs
    for section, name, hint in NUMBERS:
        bounds = bounds_of(SECTIONS[section], name)
        assert bounds.ge is not None or bounds.gt is not None, f"{section}.{name} has no lower bound"
        if hint is int:
            assert (bounds.le or bounds.lt) <= MAX_INT, f"{section}.{name} may exceed {MAX_INT}"


@pytest.mark.parametrize(("section", "name"), FLOATS, ids=[f"{s}.{n}" for s, n in FLOATS])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_naming_field_value_and_range(section, name, bad) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{name}={bad} is not a finite number; it must lie in [\[(]"):
        build(section, name, bad)


@pytest.mark.parametrize(("section", "name"), FLOATS, ids=[f"{s}.{n}" for s, n in FLOATS])
def test_non_finite_floats_in_toml_are_refused_at_load(section, name, tmp_path: Path) -> None:
    (tmp_path / "nan.toml").write_text(f"[{section}]\n{name} = nan\n")
    with pytest.raises(ConfigError, match=rf"{section}\.{name}=nan is not a finite number"):
        load_config(tmp_path / "nan.toml")


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FLOATS), value=st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_outside_its_range_is_refused(field, value) -> None:
    section, name = field
    bounds = bounds_of(SECTIONS[section], name)
    if math.isfinite(value) and bounds.contains(value):
        try:
            build(section, name, value)
        except ConfigError as exc:  # only a rule tying this field to another may refuse it
            assert "finite" not in str(exc) and f"{section}.{name}={shorten(value)} must lie" not in str(exc)
    else:
        with pytest.raises(ConfigError, match=rf"{section}\.{name}"):
            build(section, name, value)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(INTS), value=st.one_of(st.integers(), st.integers(2**53 - 2, 2**70)))
def test_any_int_outside_its_range_is_refused_and_huge_ones_never_pass(field, value) -> None:
    section, name = field
    bounds = bounds_of(SECTIONS[section], name)
    if not bounds.contains(value):
        with pytest.raises(ConfigError, match=rf"{section}\.{name}"):
            build(section, name, value)
    assert value <= MAX_INT or not bounds.contains(value)


@pytest.mark.parametrize("size", [2**53 + 1, 2**63, 10**30])
def test_toml_sizes_beyond_2_53_are_refused_with_the_range(size: int, tmp_path: Path) -> None:
    for section, name in [("chunking", "size"), ("retrieval", "k"), ("embedding", "batch_size"),
                          ("generation", "max_tokens"), ("budget", "context_tokens")]:
        (tmp_path / "big.toml").write_text(f"[{section}]\n{name} = {size}\n")
        with pytest.raises(ConfigError, match=rf"{section}\.{name}={size} must lie in \[?\(?\d+, \d+\]"):
            load_config(tmp_path / "big.toml")
    (tmp_path / "float.toml").write_text(f"[generation]\ntimeout_s = {size}\n")  # an int for a float field
    with pytest.raises(ConfigError, match=r"generation\.timeout_s=.* must lie in \(0, 86400\]"):
        load_config(tmp_path / "float.toml")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bm25_k1": -0.5}, r"retrieval.bm25_k1=-0.5 must lie in \[0, 100\]; the usual range"),
        ({"bm25_k1": math.nan}, r"retrieval.bm25_k1=nan is not a finite number"),
        ({"bm25_b": -0.1}, r"retrieval.bm25_b=-0.1 must lie in \[0, 1\]"),
        ({"bm25_b": math.nan}, r"retrieval.bm25_b=nan is not a finite number; it must lie in \[0, 1\]"),
        ({"bm25_epsilon": -1.0}, r"retrieval.bm25_epsilon=-1.0 must lie in \[0, 1\]"),
        ({"k": True}, r"retrieval.k must be int, got True"),
        ({"dense_weight": "0.5"}, r"retrieval.dense_weight must be float, got '0.5'"),
    ],
)
def test_bm25_parameters_and_types(values, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetrievalConfig(**values)


def test_timeouts_weights_thresholds_from_toml(tmp_path: Path) -> None:
    cases = {
        "[generation]\ntimeout_s = nan": r"generation.timeout_s=nan is not a finite number; it must lie in \(0, 86400\]",
        "[generation]\ntimeout_s = -inf": r"generation.timeout_s=-inf is not a finite number",
        "[generation]\ntimeout_s = 0": r"generation.timeout_s must be positive, got 0.0 .*; seconds per API request",
        "[routing]\nthreshold = inf": r"routing.threshold=inf is not a finite number",
        "[routing]\nrule_cutoffs = [1.0, nan]": r"routing.rule_cutoffs\[1\]=nan is not a finite number",
        "[routing]\ntiers = ['a', 3]": r"routing.tiers\[1\] must be str, got 3",
        "[reranking]\ninput_weight = -inf": r"reranking.input_weight=-inf is not a finite number",
        "[response_cache]\nttl_s = nan": r"response_cache.ttl_s=nan is not a finite number",
        "[chunking]\nbreakpoint_percentile = 100": r"chunking.breakpoint_percentile=100.0 must lie in \(0, 100\)",
    }
    for text, message in cases.items():
        (tmp_path / "c.toml").write_text(text + "\n")
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "c.toml")


# ------------------------------------------------------------------------------ token patterns


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(", "is not a valid regular expression"),
        ("[a-", "is not a valid regular expression"),
        ("*a", "is not a valid regular expression"),
        ("", "matches the empty string"),
        (r"\w*", "matches the empty string"),
        (r"a|", "matches the empty string"),
        (r"\b", "matches the empty string"),
        (r"(?:x)?", "matches the empty string"),
        (r"(a+)+$", "catastrophic backtracking"),
        (r"(a|aa)+$", "catastrophic backtracking"),
        (r"(\w+\s?)+$", "catastrophic backtracking"),
        (r"(a|a?)+$", "matches the empty string"),
    ],
)
def test_bad_token_patterns_are_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"retrieval.token_pattern=.*{reason}.*the default is"):
        RetrievalConfig(token_pattern=pattern)


@pytest.mark.parametrize("pattern", [r"(?u)\b\w+\b", r"[A-Za-z]+", r"\w+(?:'\w+)?", r"(?:[^\W\d_]|\d)+", r"\S+"])
def test_ordinary_token_patterns_pass(pattern: str) -> None:
    assert RetrievalConfig(token_pattern=pattern).token_pattern == pattern


# ------------------------------------------------------------------------- files and messages


@pytest.mark.parametrize("data", [b"\xff\xfe[chunking]\n", b"[chunking]\nsize = 1\x80\n", bytes(range(256)),
                                  "[embedding]\nmodel = 'é'\n".encode("latin-1")])
def test_binary_or_non_utf8_toml_is_named(data: bytes, tmp_path: Path) -> None:
    (tmp_path / "binary.toml").write_bytes(data)
    with pytest.raises(ConfigError, match=r"binary.toml' is not a UTF-8 TOML file \(byte \d+ is not UTF-8\)"):
        load_config(tmp_path / "binary.toml")


def test_nul_bytes_a_folder_and_deep_nesting_are_clear(tmp_path: Path) -> None:
    (tmp_path / "nul.toml").write_bytes(b"[chunking]\x00\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(tmp_path / "nul.toml")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path / "dir.toml")
    with pytest.raises(ConfigError, match="too deeply|is not valid TOML|must be"):
        loads("x = " + "[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda big: GenerationConfig(kind=big), "generation.kind"),
        (lambda big: RetrievalConfig(kind=big), "retrieval.kind"),
        (lambda big: RetrievalConfig(token_pattern="(" + big), "retrieval.token_pattern"),
        (lambda big: RetrievalConfig(token_pattern=big[:1001]), "longer than 1,000 characters"),
        (lambda big: GenerationConfig(base_url=big), "generation.base_url"),
        (lambda big: EmbeddingConfig(model=big), "embedding.model"),
        (lambda big: RerankingConfig(model=big), "reranking.model"),
        (lambda big: GenerationConfig(fallback_models=("claude-opus-4-5", big)), "generation.fallback_models[1]"),
        (lambda big: RetrievalConfig(index_path=big), "retrieval.index_path"),
        (lambda big: RoutingConfig(tiers=(big, big)), "routing.tiers"),
        (lambda big: from_dict(PipelineConfig, {"chunking": {"size": big}}), "chunking.size"),
        (lambda big: from_dict(PipelineConfig, {"retrieval": {big: 1}}), "unknown key"),
        (lambda big: loads(f"[retrieval]\nstopwords = '{big}'\n"), "retrieval.stopwords"),
    ],
)
def test_long_values_are_cut_in_every_message(make, field: str) -> None:
    big = "m" * 10_000_000
    with pytest.raises(ConfigError) as err:
        make(big)
    message = str(err.value)
    assert field in message and len(message) < 2_000
    assert "characters)" in message


def test_shorten_keeps_short_values_and_counts_long_ones() -> None:
    assert shorten("abc") == "'abc'" and shorten(3.5) == "3.5"
    cut = shorten("x" * 1000)
    assert cut.startswith("'" + "x" * 80 + "'") and cut.endswith("... (1,000 characters)")
    assert shorten(list(range(1000))).endswith("characters)")


# ---------------------------------------------------------------------------------- registries


@pytest.mark.parametrize("field", sorted(REGISTRIES))
def test_every_registered_kind_imports_and_configs_read_the_registry(field: str) -> None:
    registry = REGISTRIES[field]
    for name in registry:
        assert registry[name] is registry[name]  # imported once
        if field in ("chunking.method", "retrieval.kind", "reranking.kind", "routing.kind", "generation.kind"):
            assert callable(getattr(registry[name], "from_config", None)), f"{field}={name} has no from_config"
    section, _, name = field.partition(".")
    cls = SECTIONS[section]
    assert field_types(cls)[name] is str  # the registry, not a Literal, lists the kinds
    assert getattr(cls(), name) in registry.choices() == choices(field)
    with pytest.raises(ConfigError) as err:
        cls(**{name: "no-such-kind"})
    assert all(repr(kind) in str(err.value) for kind in registry.choices())


def test_unknown_generation_kind_is_refused_at_load_with_every_known_kind(tmp_path: Path) -> None:
    (tmp_path / "gen.toml").write_text('[generation]\nkind = "gpt-5"\n')
    with pytest.raises(ConfigError, match=r"unknown generation.kind 'gpt-5'; choose one of \['anthropic', 'extractive', 'local'\]"):
        load_config(tmp_path / "gen.toml")


def test_a_registry_lists_added_kinds_and_refuses_bad_targets() -> None:
    registry = Registry("reranking.kind", {"mmr": "workbench.reranking.mmr:MMRReranker"}, extra=("none",))
    assert registry.choices() == ("mmr", "none") and "none" not in registry
    registry.add("reverse", "workbench.reranking.maxsim:MaxSimReranker")
    assert registry.choices() == ("mmr", "none", "reverse") and registry["reverse"].__name__ == "MaxSimReranker"
    with pytest.raises(ValueError, match="as 'package.module:Class'"):
        registry.add("bad", "no_colon")
    with pytest.raises(ConfigError, match=r"unknown reranker 'x'; choose one of \['mmr', 'none', 'reverse'\]"):
        registry.check("x", "reranker")
    registry.remove("reverse")
    with pytest.raises(ConfigError, match=r"unknown reranking.kind 'reverse'; choose one of \['mmr', 'none'\]"):
        registry.check("reverse")


def test_choices_and_bounds_of_fields() -> None:
    assert choices("retrieval.kind") == ("bm25", "dense", "hybrid")
    assert choices("reranking.kind")[-1] == "trained" and "none" in choices("reranking.kind")
    assert choices("retrieval.index") == tuple(sorted(typing.get_args(field_types(RetrievalConfig)["index"])))
    assert choices("generation.model") is None and field_bounds("generation.model") is None
    assert field_bounds("retrieval.bm25_b").describe() == "[0, 1]"
    assert field_bounds("chunking.size").describe() == "[1, 1000000]"
    with pytest.raises(ConfigError, match="no config field 'retrieval.nope'"):
        choices("retrieval.nope")


# ------------------------------------------------------------------------ one answering model


def test_old_routing_model_maps_to_generation_model_or_says_the_fix(tmp_path: Path) -> None:
    (tmp_path / "old.toml").write_text('[routing]\nkind = "fixed"\nmodel = "claude-sonnet-4-5"\n')
    assert load_config(tmp_path / "old.toml").generation.model == "claude-sonnet-4-5"
    (tmp_path / "same.toml").write_text('[routing]\nmodel = "claude-opus-4-5"\n[generation]\nmodel = "claude-opus-4-5"\n')
    assert load_config(tmp_path / "same.toml").generation.model == "claude-opus-4-5"
    (tmp_path / "rules.toml").write_text('[routing]\nkind = "rules"\nmodel = "claude-opus-4-5"\n')
    assert load_config(tmp_path / "rules.toml").generation.model == GenerationConfig().model  # unused then
    (tmp_path / "clash.toml").write_text('[routing]\nmodel = "claude-opus-4-5"\n[generation]\nmodel = "claude-haiku-4-5"\n')
    with pytest.raises(ConfigError, match=r"routing.model='claude-opus-4-5' and generation.model='claude-haiku-4-5' "
                                          r"disagree.*delete routing.model"):
        load_config(tmp_path / "clash.toml")
    assert replace_path(PipelineConfig(), "routing.model", "claude-opus-4-5").generation.model == "claude-opus-4-5"
    assert "model" not in {f.name for f in dataclasses.fields(RoutingConfig)}


def test_the_hash_of_a_stored_run_with_routing_model_is_unchanged() -> None:
    # a run stored before the rename recorded routing.model == generation.model (the app kept them in step)
    legacy = {**config_module.to_dict(PipelineConfig()), "routing": {**config_module.to_dict(RoutingConfig()),
                                                                     "model": "claude-haiku-4-5"}}
    assert config_hash(from_dict(PipelineConfig, legacy)) == STORED_HASHES["defaults"]
    moved = replace_path(PipelineConfig(), "generation.model", "claude-sonnet-4-5")
    assert config_hash(moved) != STORED_HASHES["defaults"]


def test_cli_help_lists_every_registered_kind(capsys) -> None:
    from workbench.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    shown = capsys.readouterr().out
    for field, registry in REGISTRIES.items():
        assert f"{field} = {' | '.join(registry.choices())}" in shown


def test_resources_fall_back_to_the_defaults_and_keep_what_is_given() -> None:
    from workbench.resources import Resources
    from workbench.tokens import estimate_tokens

    assert Resources().load_count_tokens() is estimate_tokens and Resources(count_tokens=len).load_count_tokens() is len
    embed = lambda texts: texts  # noqa: E731
    assert Resources(embed=embed).load_embed() is embed
    config = replace_path(PipelineConfig(), "generation.model", "claude-opus-4-5")
    resources = Resources.for_config(config, chunks=())
    assert resources.model == "claude-opus-4-5" and resources.embedding == config.embedding
    with pytest.raises(dataclasses.FrozenInstanceError):
        resources.model = "x"  # type: ignore[misc]


def test_a_10_mb_model_name_gives_a_short_error_downstream_too() -> None:
    from workbench.prices import PriceError, price_of
    from workbench.resources import Resources
    from workbench.routing import RoutingError, make_router

    big = "claude-" + "x" * 10_000_000
    with pytest.raises(ConfigError, match=r"generation.model=.*\(10,000,007 characters\) is longer than 4,096"):
        replace_path(PipelineConfig(), "generation.model", big)
    for make, error in [(lambda: price_of(big), PriceError),
                        (lambda: make_router(RoutingConfig(kind="fixed"), Resources(model=big)), RoutingError)]:
        with pytest.raises(error) as err:
            make()
        assert len(str(err.value)) < 2_000 and "0,0" in str(err.value) and "characters)" in str(err.value)


@pytest.mark.parametrize(("text", "message"), [("name = 5", "name must be str, got 5"),
                                               ("name = ['a']", r"name must be str, got \['a'\]"),
                                               ("chunking = 5", "chunking must be a table, got int")])
def test_top_level_values_of_the_wrong_shape(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        loads(text)


def test_the_registries_say_which_kinds_embed_and_the_runner_reads_them() -> None:
    from workbench.experiment import needs_embedder
    from workbench.registry import register, unregister

    lexical = from_dict(PipelineConfig, {"retrieval": {"kind": "bm25"}, "chunking": {"method": "recursive"}})
    assert not needs_embedder(lexical)
    for path, kind in [("retrieval.kind", "dense"), ("retrieval.kind", "hybrid"), ("chunking.method", "semantic"),
                       ("reranking.kind", "maxsim"), ("reranking.kind", "mmr")]:
        assert REGISTRIES[path].embeds(kind) and needs_embedder(replace_path(lexical, path, kind)), (path, kind)
    for kind in ("cross-encoder", "trained", "llm", "none"):
        assert not needs_embedder(replace_path(lexical, "reranking.kind", kind))
    register("reranking.kind", "vectors", "workbench.reranking.mmr:MMRReranker", embeds=True)
    try:
        assert needs_embedder(replace_path(lexical, "reranking.kind", "vectors"))
    finally:
        unregister("reranking.kind", "vectors")
    assert not REGISTRIES["reranking.kind"].embeds("vectors") and "vectors" not in choices("reranking.kind")
