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
