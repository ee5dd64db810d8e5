"""Filter study: each retriever with and without the oracle metadata filter."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import PipelineConfig, RerankingConfig
from ..experiment import run_experiment
from .common import percentile_ms

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset
    from ..results import ExperimentResult

__all__ = ["FilterStudy", "filter_study"]


@dataclass(frozen=True, kw_only=True)
class FilterStudy:
    """The same retrievers with and without a metadata filter that keeps each query's own documents.

    The filter is an oracle: it restricts a query to the `field` value of the documents judged
    relevant to it (e.g. the corpus it was asked about), i.e. the best a correct filter can do.
    `results[(retriever, filtered)]` hold the per-query rows.
    """

    dataset: str
    field: str
    queries: int
    results: Mapping[tuple[str, bool], ExperimentResult] = field(repr=False)
    metric_names: tuple[str, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per (retriever, filtered): metrics and p50/p95 latency in ms."""
        import pandas as pd

        rows = []
        for (label, filtered), result in self.results.items():
            rows.append({"retriever": label, "filter": "on" if filtered else "off",
                         **{m: result.aggregates.get(m, 0.0) for m in self.metric_names},
                         "p50_ms": percentile_ms(result, 50), "p95_ms": percentile_ms(result, 95)})
        return pd.DataFrame(rows)

    def effect(self, metric: str) -> Mapping[str, tuple[float, float]]:
        """retriever -> (change in `metric`, change in p50 latency ms) when the filter is on."""
        out = {}
        for (label, filtered), result in self.results.items():
            if filtered:
                off = self.results[(label, False)]
                out[label] = (result.aggregates.get(metric, 0.0) - off.aggregates.get(metric, 0.0),
                              percentile_ms(result, 50) - percentile_ms(off, 50))
        return out


def _merge(parts: Sequence[ExperimentResult], order: Sequence[str]) -> ExperimentResult:
    """Per-group results of one config as one result over `order`'s queries."""
    rows = {r.query_id: r for part in parts for r in part.rows}
    merged = tuple(rows[q] for q in order)
    names = list(dict.fromkeys(n for r in merged for n in r.metrics))
    aggregates = {n: sum(r.metrics.get(n, 0.0) for r in merged) / len(merged) for n in names} if merged else {}
    return dataclasses.replace(parts[0], rows=merged, aggregates=aggregates)


def filter_study(
    dataset: Dataset,
    *,
    field: str = "title",
    kinds: Sequence[str] = ("bm25", "dense", "hybrid"),
    base: PipelineConfig | None = None,
    query_ids: Sequence[str] | None = None,
) -> FilterStudy:
    """Each retriever kind with and without the oracle filter {field: value of the query's documents}.

    Args:
        dataset: documents whose metadata has `field`, and judgements.
        field: the document metadata field to filter on (chunks inherit document metadata).
        kinds: retriever kinds to compare.
        base: the rest of the pipeline; default `PipelineConfig()`.
        query_ids: which queries (default: every judged query whose relevant documents share
            one value of `field`).

    Raises:
        ValueError: no document has `field`, or no query's relevant documents share one value.
    """

    base = base or PipelineConfig()
    value_of = {d.id: d.metadata[field] for d in dataset.documents if field in d.metadata}
    if not value_of:
        known = sorted({k for d in dataset.documents for k in d.metadata})
        raise ValueError(f"no document of {dataset.name!r} has metadata field {field!r}; known fields: {known}")
    groups: dict[Any, list[str]] = {}
    ids = list(query_ids) if query_ids is not None else dataset.evaluated_queries
    for qid in ids:
        values = {value_of.get(doc) for doc, grade in dataset.qrels.get(qid, {}).items() if grade > 0}
        if len(values) == 1 and None not in values:
            groups.setdefault(values.pop(), []).append(qid)
    order = [q for q in ids if any(q in g for g in groups.values())]
    if not order:
        raise ValueError(f"no query's relevant documents share one {field!r} value; pick another field")
    results: dict[tuple[str, bool], ExperimentResult] = {}
    for kind in kinds:
        config = dataclasses.replace(base, name=kind, retrieval=dataclasses.replace(base.retrieval, kind=kind),
                                     reranking=RerankingConfig())
        # Not through `runs.evaluate`: a filtered run is not identified by (config, dataset, queries) alone.
        results[(kind, False)] = run_experiment(config, dataset, query_ids=order)
        parts = [run_experiment(config, dataset, query_ids=qids, where={field: value})
                 for value, qids in groups.items()]
        results[(kind, True)] = _merge(parts, order)
    names = tuple(dict.fromkeys(n for r in results.values() for n in r.aggregates))
    return FilterStudy(dataset=dataset.name, field=field, queries=len(order), results=results, metric_names=names)
