"""The app's configuration columns without Streamlit: which fields a column edits, widget values
in and out of a config, the diff against config 1, prices, and a column's run through the one
run path, or a stored run read back as a column.

The field list is derived from the config dataclasses: every scalar field of every stage is
editable (tuples stay as loaded), its widget follows its type, and the choices of a kind come
from the stage's registry, so a new stage kind or a new config field appears in the app without
editing it. `MAIN` only picks the fields shown up front and gives them labels and ranges.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .config import PipelineConfig, field_bounds, replace_paths
from .config import choices as config_choices

if TYPE_CHECKING:
    from .datasets import Dataset
    from .experiment import Pipeline
    from .results import ExperimentResult
    from .store import RunRecord, RunStore
    from .types import Chunk, Usage

__all__ = [
    "Field",
    "MAIN",
    "Outcome",
    "answer_cost",
    "choices",
    "config_diff",
    "config_fields",
    "column_config",
    "mean_chunk_tokens",
    "price_models",
    "run_config",
    "stored_outcome",
    "stored_runs",
    "widget_values",
]

Widget = Literal["select", "int", "float", "slider", "bool", "text"]
# Shown up front, in this order, with a label (and a step for numbers); ranges come from the configs.
MAIN: Mapping[str, tuple[str, float | None]] = {
    "chunking.method": ("Chunker", None),
    "chunking.size": ("Chunk size (tokens)", 32),
    "chunking.overlap": ("Chunk overlap (tokens)", 16),
    "embedding.model": ("Embedding model", None),
    "retrieval.kind": ("Retriever", None),
    "retrieval.fusion": ("Fusion", None),
    "retrieval.dense_weight": ("Fusion weight (dense)", 0.05),
    "retrieval.k": ("Retrieve k", 10),
    "reranking.kind": ("Reranker", None),
    "reranking.candidates": ("Rerank top N", 10),
    "reranking.k": ("Keep after reranking", 1),
    "routing.kind": ("Router", None),
    "generation.kind": ("Generator", None),
    "generation.model": ("Model (priced)", None),
    "generation.context_chunks": ("Context chunks", 1),
    "generation.prompt_caching": ("Prompt caching", None),
    "generation.batch_share": ("Batch API share", 0.05),
}
_PRICED = ("generation.model",)  # offered: the models of the price table (a TOML may name others)


@dataclass(frozen=True, kw_only=True)
class Field:
    """One editable config field: its dotted path, label, widget and what the widget offers."""

    path: str
    label: str
    widget: Widget
    options: tuple[str, ...] = ()  # a select's choices
    low: float | None = None  # a number's smallest and largest valid value (None: unbounded)
    high: float | None = None
    step: float | None = None
    main: bool = False  # shown up front; the others under each column's "More settings"


def choices(path: str) -> tuple[str, ...] | None:
    """The values field `path` offers: its registry's kinds or Literal's options, the priced models, or None."""
    return tuple(price_models()) if path in _PRICED else config_choices(path)


def _field(section: str, name: str, hint: Any) -> Field | None:
    path = f"{section}.{name}"
    label, step = MAIN.get(path, (path, None))
    options = choices(path)
    if options is not None:
        return Field(path=path, label=label, widget="select", options=options, main=path in MAIN)
    if hint is bool or hint is str:
        return Field(path=path, label=label, widget="bool" if hint is bool else "text", main=path in MAIN)
    if hint not in (int, float):
        return None  # tuples and nested tables are edited in TOML files
    bounds = field_bounds(path)
    low = bounds.ge if bounds.ge is not None else (bounds.gt + 1 if hint is int and bounds.gt is not None else None)
    high = bounds.le if bounds.le is not None else (bounds.lt - 1 if hint is int and bounds.lt is not None else None)
    widget: Widget = "int" if hint is int else "slider" if low is not None and high is not None else "float"
    step = step or (1 if hint is int else (high - low) / 20 if widget == "slider" else None)
    low, high, step = (None if x is None else hint(x) for x in (low, high, step))  # widgets want one type
    return Field(path=path, label=label, widget=widget, low=low, high=high, step=step, main=path in MAIN)


def config_fields() -> tuple[Field, ...]:
    """Every scalar field of every section of `PipelineConfig`, the `MAIN` ones first, in `MAIN`'s order.

    Built again when a registry's kinds change, so a kind registered at run time appears at once.
    """
    from .registry import REGISTRIES

    return _fields(tuple(r.choices() for r in REGISTRIES.values()))


@functools.lru_cache(maxsize=4)
def _fields(kinds: tuple[tuple[str, ...], ...]) -> tuple[Field, ...]:  # kinds: the cache key only
    hints = typing.get_type_hints(PipelineConfig)
    found = []
    for section in (f.name for f in dataclasses.fields(PipelineConfig) if dataclasses.is_dataclass(hints[f.name])):
        section_hints = typing.get_type_hints(hints[section])
        found += [f for f in (_field(section, name, hint) for name, hint in section_hints.items()) if f]
    order = list(MAIN)
    return tuple(sorted(found, key=lambda f: order.index(f.path) if f.main else len(order)))


def widget_values(config: PipelineConfig) -> dict[str, Any]:
    """Field path -> the value a column's widget shows for `config`."""
    return {f.path: getattr(getattr(config, f.path.partition(".")[0]), f.path.partition(".")[2])
            for f in config_fields()}


def column_config(base: PipelineConfig, name: str, values: Mapping[str, Any]) -> PipelineConfig:
    """`base` with a column's name and widget values.

    Raises:
        ConfigError: a bad value or combination (the message names the field).
    """
    return replace_paths(dataclasses.replace(base, name=name), values)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if not dataclasses.is_dataclass(value):
        return {prefix.rstrip("."): value}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        out.update(_flat(getattr(value, f.name), f"{prefix}{f.name}."))
    return out


def config_diff(first: PipelineConfig, other: PipelineConfig) -> list[tuple[str, Any, Any]]:
    """(dotted field, value in `first`, value in `other`) for every field that differs, name aside."""
    a, b = _flat(first), _flat(other)
    return [(k, a[k], b[k]) for k in b if k != "name" and a.get(k) != b[k]]


@functools.cache
def price_models() -> list[str]:
    """Model ids of the price table, sorted."""
    from .prices import load_prices

    return sorted(load_prices())


def answer_cost(usage: Usage, model: str) -> float:
    """What an answer cost: the provider's figure, else its tokens at the price table's rate (0 if unpriced)."""
    if usage.cost_usd or model not in price_models():
        return usage.cost_usd
    from .prices import price_of, usage_cost

    return usage_cost(usage, price_of(model))


def mean_chunk_tokens(chunks: Sequence[Chunk]) -> int:
    """Mean estimated Claude tokens of a sample of `chunks` (up to about 200), for pricing the context."""
    from .tokens import estimate_tokens

    sample = chunks[:: max(1, len(chunks) // 200)]
    return round(sum(estimate_tokens(c.text) for c in sample) / len(sample))


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One column's run (or a stored run shown as a column): config, result, or the error that stopped it."""

    label: str
    config: PipelineConfig
    result: ExperimentResult | None = None
    pipeline: Pipeline | None = None  # built for this session's runs; None for a stored run until needed
    error: str = ""
    seconds: float = 0.0
    embedded: int = 0  # texts this run embedded (cache misses), documents and queries together
    reused: bool = False  # served from the run store: an identical request was stored before
    run_id: str = ""  # its run in the store


def run_config(config: PipelineConfig, dataset: Dataset, query_ids: Sequence[str]) -> tuple[ExperimentResult, str, bool]:
    """Evaluate `config` through the one run path: (result, run id, served from the store)."""
    from .runs import evaluate

    outcome = evaluate(config, dataset, query_ids=list(query_ids))
    return outcome.result, outcome.run_id, outcome.cached


def stored_runs(dataset: Dataset, limit: int = 200) -> list[RunRecord]:
    """The newest `limit` completed runs of exactly this dataset (by fingerprint) in the default run store,
    newest first."""
    from .store import RunStore

    with RunStore.default() as store:
        return store.runs(dataset_fingerprint=dataset.fingerprint(), status="completed", limit=limit)[::-1]


def stored_outcome(record: RunRecord) -> Outcome:
    """A stored run as a column, read back from the default run store without recomputing anything."""
    from .store import RunStore

    with RunStore.default() as store:
        result = store.result(record.id)
    return Outcome(label=f"run {record.id[:8]} · {record.name}", config=result.config, result=result, reused=True,
                   run_id=record.id)
