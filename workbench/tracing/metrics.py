"""Metrics from stored traces: latency percentiles per stage, cost, errors, citations and feedback."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .spans import STAGES
from .store import TraceFilter

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset
    from .store import TraceStore

__all__ = [
    "LatencySummary",
    "TraceMetrics",
    "trace_metrics",
    "metrics_by_tag",
    "percentiles_over_time",
    "CostProjection",
    "monthly_projection",
    "CacheRates",
    "measured_cache_rates",
]


@dataclass(frozen=True, kw_only=True)
class LatencySummary:
    """Percentiles (seconds) of one stage's latency, or of the whole request ("request")."""

    stage: str
    count: int
    p50_s: float
    p95_s: float
    p99_s: float
    mean_s: float


def _summary(name: str, values: Sequence[float]) -> LatencySummary:
    import numpy as np

    v = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(v, [50, 95, 99]) if len(v) else (math.nan,) * 3
    return LatencySummary(
        stage=name, count=len(v), p50_s=float(p50), p95_s=float(p95), p99_s=float(p99),
        mean_s=float(v.mean()) if len(v) else math.nan,
    )


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(known) / len(known) if known else None


@dataclass(frozen=True, kw_only=True)
class TraceMetrics:
    """What a set of traces says about latency, cost, errors, citations and feedback.

    `citation_validity` is the share of citations naming a chunk the generator was shown;
    `citation_accuracy` the share of cited documents judged relevant, over the traces whose query
    has judgements in the dataset given (None where nothing is known).
    """

    n_requests: int
    error_rate: float
    latency: tuple[LatencySummary, ...]  # "request" (end to end), each stage, "ttft"
    output_tokens_per_s: float | None
    cost_per_request_usd: float
    total_cost_usd: float
    citation_validity: float | None
    citation_accuracy: float | None
    n_feedback: int
    positive_feedback_rate: float | None
    tag: str = ""
    tool_call_accuracy: float | None = None  # mean over agent traces (workbench.agents), None without any

    def latency_frame(self) -> pd.DataFrame:
        """One row per stage: count and P50/P95/P99/mean in milliseconds."""
        import pandas as pd

        return pd.DataFrame(
            [{"stage": s.stage, "count": s.count, "p50_ms": 1e3 * s.p50_s, "p95_ms": 1e3 * s.p95_s,
              "p99_ms": 1e3 * s.p99_s, "mean_ms": 1e3 * s.mean_s} for s in self.latency]
        )

    def to_frame(self) -> pd.DataFrame:
        """One wide row: the scalars and `<stage>_p50_ms`/`_p95_ms`/`_p99_ms` per stage."""
        import pandas as pd

        row: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k != "latency"}
        for s in self.latency:
            row.update({f"{s.stage}_p50_ms": 1e3 * s.p50_s, f"{s.stage}_p95_ms": 1e3 * s.p95_s,
                        f"{s.stage}_p99_ms": 1e3 * s.p99_s})
        return pd.DataFrame([row])


def _relevant_by_query(dataset: Dataset | None) -> dict[str, set[str]]:
    if dataset is None:
        return {}
    return {
        dataset.queries[q].strip(): {d for d, g in rel.items() if g > 0}
        for q, rel in dataset.qrels.items() if q in dataset.queries
    }


def _tool_call_accuracy(store: TraceStore, where: TraceFilter | None) -> float | None:
    """Mean tool-call accuracy recorded on the root spans of agent trials (`agent` traces)."""
    import json

    clause, params = (where or TraceFilter()).sql("t")
    rows = store._read(
        "SELECT s.attributes FROM spans s JOIN traces t ON s.trace_id = t.trace_id"
        f" AND s.parent_id IS NULL AND s.name = 'agent'{clause}", params)
    return _mean([json.loads(raw).get("workbench.agent.tool_call_accuracy") for (raw,) in rows])


def trace_metrics(
    store: TraceStore, where: TraceFilter | None = None, *, dataset: Dataset | None = None, tag: str = ""
) -> TraceMetrics:
    """Latency percentiles per stage and end to end, TTFT, tokens/s, cost, errors, citations, feedback.

    Args:
        store: the trace store.
        where: which traces count (default: all).
        dataset: judgements for citation accuracy, matched to traces by exact query text.
        tag: a label carried into the result (e.g. the user or feature it covers).
    """
    records = store.traces(where)
    stages = store.stage_frame(where)
    relevant = _relevant_by_query(dataset)
    latency = [_summary("request", [r.duration_s for r in records])]
    for name in STAGES:
        durations = stages.loc[stages["stage"] == name, "duration_s"].tolist()
        if durations:
            latency.append(_summary(name, durations))
    ttft = [r.ttft_s for r in records if r.ttft_s is not None]
    if ttft:
        latency.append(_summary("ttft", ttft))
    accuracy = [
        sum(d in relevant[r.query.strip()] for d in r.cited_doc_ids) / len(r.cited_doc_ids)
        for r in records if r.cited_doc_ids and r.query.strip() in relevant
    ]
    ids = {r.trace_id for r in records}
    latest = {f.trace_id: f.score for f in store.feedback() if f.trace_id in ids}
    n = len(records)
    total_cost = sum(r.cost_usd for r in records)
    return TraceMetrics(
        n_requests=n,
        error_rate=sum(r.status == "error" for r in records) / n if n else 0.0,
        latency=tuple(latency),
        output_tokens_per_s=_mean([r.output_tokens_per_s for r in records]),
        cost_per_request_usd=total_cost / n if n else 0.0,
        total_cost_usd=total_cost,
        citation_validity=_mean([r.citation_validity for r in records]),
        citation_accuracy=_mean(accuracy),
        n_feedback=len(latest),
        positive_feedback_rate=(sum(s > 0 for s in latest.values()) / len(latest)) if latest else None,
        tool_call_accuracy=_tool_call_accuracy(store, where),
        tag=tag,
    )


def metrics_by_tag(
    store: TraceStore, by: Literal["user", "feature"], where: TraceFilter | None = None, *, dataset: Dataset | None = None
) -> pd.DataFrame:
    """`trace_metrics` per user tag or per feature tag, one row each (column `tag`).

    Raises:
        ValueError: `by` is neither "user" nor "feature".
    """
    import dataclasses

    import pandas as pd

    column = {"user": "user_tag", "feature": "feature_tag"}.get(by)
    if column is None:
        raise ValueError(f"unknown tag {by!r}; choose one of ['feature', 'user']")
    base = where or TraceFilter()
    values = store.tag_values(column, base)
    frames = [
        trace_metrics(store, dataclasses.replace(base, **{f"{by}s": (v,)}), dataset=dataset, tag=v).to_frame()
        for v in values
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["tag"])


def percentiles_over_time(store: TraceStore, where: TraceFilter | None = None, *, bucket: str = "1min") -> pd.DataFrame:
    """P50/P95/P99 latency per time bucket for the whole request and each stage.

    Args:
        store: the trace store.
        where: which traces count.
        bucket: a pandas frequency ("1min", "1h", "1D").

    Returns:
        Columns: bucket (UTC timestamp), stage, count, p50_ms, p95_ms, p99_ms.
    """
    import pandas as pd

    traces = store.traces_frame(where)[["trace_id", "started_at", "duration_s"]].assign(stage="request")
    frame = pd.concat([traces, store.stage_frame(where)], ignore_index=True)
    columns = ["bucket", "stage", "count", "p50_ms", "p95_ms", "p99_ms"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["bucket"] = frame["started_at"].dt.floor(bucket)
    grouped = frame.groupby(["bucket", "stage"])["duration_s"]
    out = pd.DataFrame({
        "count": grouped.size(),
        "p50_ms": 1e3 * grouped.quantile(0.50),
        "p95_ms": 1e3 * grouped.quantile(0.95),
        "p99_ms": 1e3 * grouped.quantile(0.99),
    }).reset_index()
    return out[columns]


@dataclass(frozen=True, kw_only=True)
class CostProjection:
    """One user's or feature's spend in the traces, projected to a month and held against a budget."""

    tag: str  # the user or feature ("" = untagged; "all" for every trace)
    requests: int
    spent_usd: float
    days_observed: float  # first trace to `now`, at least one day (a few minutes of traffic is not a month)
    monthly_usd: float  # spent_usd / days_observed * days_per_month: a linear projection
    budget_usd: float | None
    over_budget: bool


def monthly_projection(
    store: TraceStore,
    by: Literal["user", "feature"] | None = None,
    *,
    budget_usd: float | None = None,
    where: TraceFilter | None = None,
    now: Any = None,
    days_per_month: float = 30.0,
) -> list[CostProjection]:
    """Monthly cost per user or per feature (or of all traces, `by=None`), projected linearly from
    the traces' recorded cost since each tag's first trace, highest first.

    Raises:
        ValueError: an unknown `by`, a negative budget or a non-positive `days_per_month`.
    """
    import datetime as dt

    if by not in (None, "user", "feature"):
        raise ValueError(f"unknown tag {by!r}; choose one of ['feature', 'user'] or None for all traces")
    if budget_usd is not None and not budget_usd >= 0:
        raise ValueError(f"budget_usd={budget_usd} must be >= 0 (a monthly amount in USD)")
    if not days_per_month > 0:
        raise ValueError(f"days_per_month={days_per_month} must be positive")
    now = now or dt.datetime.now(dt.timezone.utc)
    groups: dict[str, list[Any]] = {}
    for r in store.traces(where):
        groups.setdefault("all" if by is None else (r.user if by == "user" else r.feature), []).append(r)
    out = []
    for tag, records in groups.items():
        spent = sum(r.cost_usd for r in records)
        days = max(1.0, (now - min(r.started_at for r in records)).total_seconds() / 86400)
        monthly = spent / days * days_per_month
        out.append(CostProjection(tag=tag, requests=len(records), spent_usd=spent, days_observed=days,
                                  monthly_usd=monthly, budget_usd=budget_usd,
                                  over_budget=budget_usd is not None and monthly > budget_usd))
    return sorted(out, key=lambda p: -p.monthly_usd)


@dataclass(frozen=True, kw_only=True)
class CacheRates:
    """Cache hit rates measured on the traced traffic (None where the traces hold no evidence)."""

    prompt_cache_requests: int  # requests that wrote or read the prompt cache
    prompt_cache_hit_rate: float | None  # of those, the share that read it
    response_cache_lookups: int
    response_cache_hit_rate: float | None


def measured_cache_rates(store: TraceStore, where: TraceFilter | None = None) -> CacheRates:
    """The prompt-cache and response-cache hit rates of the traced "answer" requests.

    A request used the prompt cache when its usage wrote or read cache tokens, and hit it when
    it read some. A response-cache lookup is a request with a `response_cache` stage; a hit is
    one that then generated nothing.
    """
    import dataclasses

    base = dataclasses.replace(where or TraceFilter(), operation="answer")
    records = store.traces(base)
    cached = [r for r in records if r.cache_read_tokens or r.cache_write_tokens]
    stages = store.stage_frame(base)
    looked = set(stages.loc[stages["stage"] == "response_cache", "trace_id"])
    generated = set(stages.loc[stages["stage"] == "generate", "trace_id"])
    hits = looked - generated
    return CacheRates(
        prompt_cache_requests=len(cached),
        prompt_cache_hit_rate=sum(r.cache_read_tokens > 0 for r in cached) / len(cached) if cached else None,
        response_cache_lookups=len(looked),
        response_cache_hit_rate=len(hits) / len(looked) if looked else None,
    )
