"""Configs: the stage dataclasses (defined in `workbench.sections`, re-exported here), TOML
round-trips, a stable hash, dotted-path replacement, and each field's choices and range.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from .registry import REGISTRIES
from .sections import (
    DEFAULT_ANSWER_MODEL,
    DEFAULT_EMBEDDING_MODEL,
    BudgetConfig,
    ChunkingConfig,
    EmbeddingConfig,
    EvaluationConfig,
    GenerationConfig,
    PipelineConfig,
    RerankingConfig,
    ResponseCacheConfig,
    RetrievalConfig,
    RoutingConfig,
)
from .sections import field_types as _type_hints
from .validation import Bounds, ConfigError, bounds_of, shorten

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_ANSWER_MODEL",
    "ChunkingConfig",
    "EmbeddingConfig",
    "RetrievalConfig",
    "RerankingConfig",
    "RoutingConfig",
    "GenerationConfig",
    "EvaluationConfig",
    "PipelineConfig",
    "ResponseCacheConfig",
    "BudgetConfig",
    "ConfigError",
    "from_dict",
    "to_dict",
    "load_config",
    "loads",
    "save_config",
    "config_hash",
    "replace_path",
    "replace_paths",
    "choices",
    "field_bounds",
    "shorten",
]

T = TypeVar("T")


def from_dict(cls: type[T], data: typing.Mapping[str, Any], *, where: str = "") -> T:
    """Build config dataclass `cls` from a mapping, rejecting unknown keys.

    Raises:
        ConfigError: an unknown key (the message lists the known ones) or a bad value.
    """
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"{where or cls.__name__} must be a table, got {type(data).__name__}")
    if cls is PipelineConfig:
        data = _upgrade(data)
    hints = _type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {shorten(unknown)} in {where or cls.__name__}; known keys are {sorted(known)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, where=path)  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(hint, value, path)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


# Keys that moved: old dotted path -> the field that replaced it. Files using the old key still load.
RENAMED: Mapping[str, str] = {"routing.model": "generation.model"}


def _upgrade(data: typing.Mapping[str, Any]) -> dict[str, Any]:
    """Map renamed keys to their new place; refuse an old and a new key that disagree."""
    data = {k: dict(v) if isinstance(v, typing.Mapping) else v for k, v in data.items()}
    for old, new in RENAMED.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        section, target = data.get(old_section), data.setdefault(new_section, {})
        if not (isinstance(section, dict) and old_key in section and isinstance(target, dict)):
            continue
        value = section.pop(old_key)
        if section.get("kind", "fixed") != "fixed":
            continue  # only the fixed router read the old key
        if target.get(new_key, value) != value:
            raise ConfigError(
                f"{old}={shorten(value)} and {new}={shorten(target[new_key])} disagree: {new} is now the one "
                f"field naming the answering model; delete {old} and keep the model you mean in {new}"
            )
        target[new_key] = value
    return data


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """TOML values into field types: lists into tuples, integers into floats (types are checked later)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {shorten(value)}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if abs(value) < 2**1023 else value
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain dicts and lists (tuples become lists, None values are dropped)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(config))


# Fields added after runs were stored under their config's hash: left out of the hash while
# they hold this default, so a config that does not use them keeps the hash it always had.
_HASHED_ONLY_WHEN_SET: Mapping[str, Any] = {
    "generation.batch_share": 0.0,
    "retrieval.backend": "faiss",
    "retrieval.backend_url": "",
    "retrieval.ivf_lists": 0,
    "retrieval.ivf_probes": 20,
    "retrieval.index_path": "",
    "response_cache": dataclasses.asdict(ResponseCacheConfig()),
    "budget": dataclasses.asdict(BudgetConfig()),
}


def config_hash(config: PipelineConfig) -> str:
    """A stable content hash of a pipeline config (its `name` excluded), 16 hex characters.

    Fields added later (`_HASHED_ONLY_WHEN_SET`) count only when they differ from their default.
    """
    data = to_dict(config)
    data.pop("name", None)
    data["routing"]["model"] = data["generation"]["model"]  # hashed where it was before `RENAMED`
    for dotted, default in _HASHED_ONLY_WHEN_SET.items():
        section, _, key = dotted.partition(".")
        if not key:  # a whole section
            if data[section] == default:
                del data[section]
        elif data[section][key] == default:
            del data[section][key]
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_config(path: str | Path) -> PipelineConfig:
    """Read a `PipelineConfig` from a TOML file.

    Raises:
        ConfigError: the file is missing, is not TOML, or holds unknown keys or bad values.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {shorten(str(path))} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {shorten(str(path))} is a folder; name a .toml file") from None
    return loads(data, source=str(path))


def loads(data: bytes | str, *, source: str = "config.toml") -> PipelineConfig:
    """A `PipelineConfig` from TOML bytes or text; `source` (its file name) names it in messages,
    and its stem is the config's name unless the TOML sets one.

    Raises:
        ConfigError: not UTF-8, not TOML, unknown keys or bad values.
    """
    name = shorten(source)
    try:
        table = tomllib.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{name} is not a UTF-8 TOML file (byte {exc.start} is not UTF-8); save it as UTF-8 text"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {name} is not valid TOML: {shorten(str(exc), 200)}") from None
    except RecursionError:
        raise ConfigError(f"config file {name} nests arrays or tables too deeply to be a config") from None
    table.setdefault("name", Path(source).stem)
    return from_dict(PipelineConfig, table)


def dumps_config(config: PipelineConfig) -> str:
    """A config as TOML text."""
    import tomli_w

    return tomli_w.dumps(to_dict(config))


def save_config(config: PipelineConfig, path: str | Path) -> None:
    """Write a config to a TOML file atomically."""
    from .io import atomic_write_text

    atomic_write_text(Path(path), dumps_config(config))


def replace_path(config: T, dotted: str, value: Any) -> T:
    """A copy of `config` with the field at `dotted` (e.g. "chunking.size") set to `value`.

    Raises:
        ConfigError: the path names no field.
    """
    if isinstance(config, PipelineConfig):
        dotted = RENAMED.get(dotted, dotted)
    head, _, rest = dotted.partition(".")
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    if head not in names:
        raise ConfigError(
            f"{type(config).__name__} has no field {head!r} (in {dotted!r}); known: {sorted(names)}"
        )
    if rest:
        value = replace_path(getattr(config, head), rest, value)
    else:
        hint = _type_hints(type(config))[head]
        value = _coerce(hint, value, dotted)
    return dataclasses.replace(config, **{head: value})  # type: ignore[type-var]


def replace_paths(config: T, changes: Mapping[str, Any]) -> T:
    """A copy of `config` with every dotted field of `changes` set at once.

    A stage's fields are set together, so fields checked against each other (chunking.size
    and chunking.overlap) may change together where a step between them would be invalid.

    Raises:
        ConfigError: a path that names no field, or a bad value or combination.
    """
    by_stage: dict[str, dict[str, Any]] = {}
    if isinstance(config, PipelineConfig):
        changes = {RENAMED.get(k, k): v for k, v in changes.items()}
    for dotted, value in changes.items():
        head, _, rest = dotted.partition(".")
        if rest and "." not in rest and dataclasses.is_dataclass(getattr(config, head, None)):
            by_stage.setdefault(head, {})[rest] = value
        else:  # a top-level field, deeper nesting or no such field: one at a time
            config = replace_path(config, dotted, value)
    for head, fields in by_stage.items():
        stage = getattr(config, head)
        config = dataclasses.replace(config, **{head: from_dict(type(stage), {**to_dict(stage), **fields}, where=head)})
    return config


def _field(path: str) -> tuple[type, str]:
    section, _, name = path.partition(".")
    hints = _type_hints(PipelineConfig)
    cls = hints.get(section)
    if not (dataclasses.is_dataclass(cls) and name in _type_hints(cls)):  # type: ignore[arg-type]
        raise ConfigError(f"no config field {shorten(path)}; write it as section.field, e.g. 'retrieval.kind'")
    return cls, name  # type: ignore[return-value]


def choices(path: str) -> tuple[str, ...] | None:
    """The values field `path` (e.g. "retrieval.kind") accepts, sorted: the stage registry's kinds
    or the Literal's options; None for a free field (a number, a model name...).

    Raises:
        ConfigError: `path` names no config field.
    """
    cls, name = _field(path)
    if path in REGISTRIES:
        return REGISTRIES[path].choices()
    hint = _type_hints(cls)[name]
    return tuple(sorted(typing.get_args(hint))) if typing.get_origin(hint) is Literal else None


def field_bounds(path: str) -> Bounds | None:
    """The valid range of numeric field `path` (e.g. "retrieval.bm25_b"); None for other fields.

    Raises:
        ConfigError: `path` names no config field.
    """
    cls, name = _field(path)
    return bounds_of(cls, name) if _type_hints(cls)[name] in (int, float) else None
