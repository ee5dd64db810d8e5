"""What a sweep searches: its settings, the spec file, and the expansion of a space into trials."""

from __future__ import annotations

import dataclasses
import itertools
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, PipelineConfig, config_hash, from_dict, replace_paths
from ..validation import check_fields

__all__ = ["SweepSettings", "SweepSpec", "expand_space", "load_sweep_spec"]


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """How a sweep searches and where its trials run.

    `method="grid"` runs every combination; `"random"` draws `trials` distinct combinations
    (seeded). `executor="local"` with `workers=1` runs trials in this process (models load
    once); `workers>1` uses that many processes. `executor="ray"` submits trials as Ray tasks
    to `ray_address` ("" starts a local instance; "auto" or "ray://head:10001" joins a
    cluster). More than `confirm_above` pending trials need explicit confirmation.
    """

    method: Literal["grid", "random"] = "grid"
    trials: int = 0
    seed: int = 0
    executor: Literal["local", "ray"] = "local"
    workers: int = 1
    ray_address: str = ""
    confirm_above: int = 1000

    def __post_init__(self) -> None:
        check_fields(self, "settings")  # types; integers beyond MAX_INT (a TOML's 2^60 workers)
        if self.method not in ("grid", "random"):
            raise ConfigError(f"unknown sweep method {self.method!r}; choose one of ['grid', 'random']")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"unknown sweep executor {self.executor!r}; choose one of ['local', 'ray']")
        if self.method == "random" and self.trials <= 0:
            raise ConfigError(f"a random sweep needs trials > 0, got trials={self.trials}")
        if self.method == "grid" and self.trials:
            raise ConfigError("trials applies to method='random' only; drop it or set method='random'")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers} must be at least 1")
        if self.confirm_above < 0:
            raise ConfigError(f"confirm_above={self.confirm_above} must be >= 0")


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A sweep as written in a TOML file: dataset, base config, search space and settings."""

    name: str = "sweep"
    dataset: str = "cranfield"
    base: PipelineConfig = field(default_factory=PipelineConfig)
    space: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    settings: SweepSettings = field(default_factory=SweepSettings)


def expand_space(
    base: PipelineConfig,
    space: Mapping[str, Sequence[Any]],
    settings: SweepSettings | None = None,
) -> list[tuple[dict[str, Any], PipelineConfig]]:
    """The trials of a search space: (swept values, config) pairs, duplicates removed.

    Args:
        base: the config every trial starts from.
        space: dotted field -> values to try, e.g. {"chunking.size": [128, 256]}.
        settings: grid (every combination, in order) or random (`trials` distinct
            combinations drawn with `seed`); grid by default.

    Returns:
        Trials in a stable order; each config's `name` is the base name plus the swept values.

    Raises:
        ConfigError: a field that does not exist, an empty list of values, or a combination
            of values no config accepts (the message names the trial).
    """
    settings = settings or SweepSettings()
    if not space:
        raise ConfigError("the search space is empty; give at least one field, e.g. {'chunking.size': [128, 256]}")
    for dotted, values in space.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"sweep field {dotted!r} needs a non-empty list of values, got {values!r}")
        _check_field(base, dotted)
    names = list(space)
    combos: list[tuple[Any, ...]] = list(itertools.product(*(space[n] for n in names)))
    if settings.method == "random":
        rng = random.Random(settings.seed)
        combos = rng.sample(combos, min(settings.trials, len(combos)))
    # Build each stage's sub-config once per distinct combination of its swept values: a
    # grid of thousands of trials has only tens of distinct stage configs to validate.
    stages: dict[tuple[Any, ...], Any] = {}
    trials: list[tuple[dict[str, Any], PipelineConfig]] = []
    seen: set[str] = set()
    for combo in combos:
        params = dict(zip(names, combo))
        label = ",".join(f"{n}={v}" for n, v in params.items())
        by_stage: dict[str, list[tuple[str, Any]]] = {}
        for dotted, value in params.items():
            head, _, rest = dotted.partition(".")
            by_stage.setdefault(head, []).append((rest, value))
        try:
            changes = {}
            for head, items in by_stage.items():
                key = (head, tuple((rest, repr(value)) for rest, value in items))
                if key not in stages:
                    stages[key] = _apply(base, head, items)
                changes[head] = stages[key]
        except ConfigError as exc:
            raise ConfigError(f"sweep trial [{label}] is not a valid config: {exc}") from None
        config = dataclasses.replace(base, **changes, name=f"{base.name}[{label}]")
        key = config_hash(config)
        if key not in seen:
            seen.add(key)
            trials.append((params, config))
    return trials


def _check_field(base: PipelineConfig, dotted: str) -> None:
    obj: Any = base
    for part in dotted.split("."):
        known = sorted(f.name for f in dataclasses.fields(obj)) if dataclasses.is_dataclass(obj) else []
        if part not in known:
            raise ConfigError(
                f"cannot sweep {dotted!r}: {type(obj).__name__} has no field {part!r}; known: {known}"
            )
        obj = getattr(obj, part)


def _apply(base: PipelineConfig, head: str, items: list[tuple[str, Any]]) -> Any:
    """Field `head` of `base` with all (sub-path, value) replacements set at once (`config.replace_paths`:
    each intermediate step could be invalid on its own, overlap 300 before size 512 over a base size
    of 256, while the final combination is fine)."""
    return getattr(replace_paths(base, {f"{head}.{rest}" if rest else head: value for rest, value in items}), head)


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read a sweep from TOML.

    The file holds `name`, `dataset`, a `[base]` table (a pipeline config) or `base = "file.toml"`
    (relative to the spec), a `[space]` table of dotted field -> list of values, and an optional
    `[settings]` table (`SweepSettings` fields).

    Raises:
        ConfigError: the file is missing or invalid, or a key or value is unknown.
    """
    from ..config import load_config

    path = Path(path)
    where = f"sweep file {str(path)!r}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a folder; give the path of a sweep .toml file") from None
    except UnicodeDecodeError as exc:  # a binary file, or text in another encoding
        raise ConfigError(f"{where} is not UTF-8 TOML ({exc}); save it as UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; known keys are {sorted(known)}")
    for key, example in (("name", '"sizes"'), ("dataset", '"cranfield" or a folder path')):
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            raise ConfigError(f"{key} = {data[key]!r} in {where} must be a non-empty string, e.g. {key} = {example}")
    for key in ("space", "settings"):
        if key in data and not isinstance(data[key], Mapping):
            raise ConfigError(f"{key} = {data[key]!r} in {where} must be a table ([{key}])")
    base_data = data.get("base", {})
    if isinstance(base_data, str):
        base = load_config(path.parent / base_data)
    elif isinstance(base_data, Mapping):
        base = from_dict(PipelineConfig, {"name": data.get("name", path.stem), **base_data}, where="base")
    else:
        raise ConfigError(f"base = {base_data!r} in {where} must be a [base] table or the path of a config file")
    space = data.get("space", {})
    if not space:
        raise ConfigError(
            f"{where} needs a [space] table, e.g. \"chunking.size\" = [128, 256]"
        )
    return SweepSpec(
        name=data.get("name", path.stem),
        dataset=data.get("dataset", "cranfield"),
        base=base,
        space={k: tuple(v) if isinstance(v, list) else v for k, v in space.items()},
        settings=from_dict(SweepSettings, data.get("settings", {}), where="settings"),
    )
