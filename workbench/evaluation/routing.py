"""Routing and costs: routers' cost-quality curves on a labelled split, and the levers' savings in words."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..chunking import make_chunker
from ..config import ChunkingConfig, RetrievalConfig, RoutingConfig
from ..datasets import load_dataset
from ..embedding import load_embedder
from ..resources import Resources
from ..retrieval import build_retriever
from ..routing import (
    DEMO_LABELS,
    LearnedRouter,
    RetrievalRouter,
    load_labels,
    make_router,
    sweep_thresholds,
    tier_costs,
    tier_quality,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..costs import CostBreakdown
    from ..routing import CostQualityCurve, RoutingEvaluation

__all__ = ["RoutingStudy", "routing_study", "lever_summary"]


@dataclass(frozen=True, kw_only=True)
class RoutingStudy:
    """Routers fitted on a labelled training split, traced over thresholds on the test split."""

    tiers: tuple[str, ...]
    train: int
    test: int
    curves: Mapping[str, CostQualityCurve] = field(repr=False)
    labels_path: str

    def to_frame(self) -> pd.DataFrame:
        """One row per (router, threshold): cost share, quality retained, accuracy, tier shares."""
        import pandas as pd

        return pd.concat([c.to_frame().assign(router=name) for name, c in self.curves.items()], ignore_index=True)

    def operating_points(self, min_quality_retained: float = 0.95) -> Mapping[str, RoutingEvaluation]:
        """router -> its cheapest threshold keeping `min_quality_retained` of top-model quality."""
        return {name: c.operating_point(min_quality_retained) for name, c in self.curves.items()}

    def recommend(self, min_quality_retained: float = 0.95) -> tuple[str, RoutingEvaluation]:
        """The router whose operating point costs least (ties: higher quality)."""
        points = self.operating_points(min_quality_retained)
        name = min(points, key=lambda n: (points[n].cost_usd, -points[n].quality))
        return name, points[name]

    def routing_mix(self, router: str, min_quality_retained: float = 0.95) -> dict[str, float]:
        """The share of traffic per tier at `router`'s operating point (a `Workload.routing_mix`)."""
        if router not in self.curves:
            raise ValueError(f"unknown router {router!r}; this study has {sorted(self.curves)}")
        point = self.curves[router].operating_point(min_quality_retained)
        return {t: s for t, s in zip(self.tiers, point.tier_shares) if s > 0}


def routing_study(
    *,
    routers: Sequence[str] = ("rules", "learned"),
    config: RoutingConfig | None = None,
    labels_path: str | Path | None = None,
    test_share: float = 0.4,
    seed: int = 0,
    context_tokens: int = 1500,
    output_tokens: int = 300,
) -> RoutingStudy:
    """Fit routers on a stratified training split and trace their cost-quality curves on the rest.

    Quality per tier is `routing.tier_quality` of the labels (1 at or above the label's tier,
    halved per tier short: a stated proxy); cost per call is `routing.tier_costs` at list prices.

    Args:
        routers: router kinds: "rules" (no training), "learned" (query embeddings + classifier),
            "retrieval" (features of the retrieved hits over the bundled chunking set).
        config: tiers, classifier and rule settings; default `RoutingConfig()`.
        labels_path: a labelled routing file (CSV/JSONL); default the demo labels.
        test_share: share of the labels held out for the curves.
        seed: the split's seed.
        context_tokens: prompt tokens besides the query, per call.
        output_tokens: answer tokens per call.

    Raises:
        ValueError: an unknown router kind (the message lists the known ones).
    """

    known = ("rules", "learned", "retrieval")
    unknown = [r for r in routers if r not in known]
    if unknown or not routers:
        raise ValueError(f"unknown router kind(s) {unknown or list(routers)}; choose from {list(known)}")
    config = config or RoutingConfig()
    path = Path(labels_path) if labels_path is not None else DEMO_LABELS
    train, test = load_labels(path, config.tiers).split(test_share, seed=seed)
    n = len(config.tiers)
    quality, cost = tier_quality(test.label_index, n), tier_costs(
        test.queries, config.tiers, context_tokens=context_tokens, output_tokens=output_tokens)
    curves = {}
    for kind in routers:
        router = _fitted_router(kind, config, train, make_router)
        curves[kind] = sweep_thresholds(router.adequacy(test.queries), quality, cost, tiers=config.tiers,
                                        labels=test.label_index)
    return RoutingStudy(tiers=tuple(config.tiers), train=len(train.ids), test=len(test.ids), curves=curves,
                        labels_path=str(path))


def _fitted_router(kind: str, config: RoutingConfig, train: Any, make_router: Any) -> Any:
    """A scoring router of `kind`, fitted on `train` where it learns."""
    if kind == "rules":
        return make_router(dataclasses.replace(config, kind="rules"))
    embedder = load_embedder()
    if kind == "learned":
        return LearnedRouter.untrained(config, Resources(embedder=embedder)).fit(train)
    chunker = make_chunker(ChunkingConfig())
    chunks = [c for d in load_dataset("chunking").documents for c in chunker.chunk(d)]
    retriever = build_retriever(RetrievalConfig(kind="dense"), chunks, embedder)
    return RetrievalRouter.untrained(config, Resources(retriever=retriever)).fit(train)


def lever_summary(breakdown: CostBreakdown) -> str:
    """A few lines: the naive and final cost, and each lever's saving, largest first."""
    unit = "month" if breakdown.unit == "month" else "query"
    lines = [f"naive: ${breakdown.naive_total:,.2f} per {unit}; with every lever: ${breakdown.total:,.2f} "
             f"({1 - breakdown.total / breakdown.naive_total:.0%} less)" if breakdown.naive_total else
             "naive cost is 0"]
    for lever, saving in sorted(breakdown.savings.items(), key=lambda kv: -kv[1]):
        share = saving / breakdown.naive_total if breakdown.naive_total else 0.0
        lines.append(f"  {lever:15s} saves ${saving:,.2f} ({share:.0%} of the naive cost)")
    lines += [f"  note: {n}" for n in breakdown.notes]
    return "\n".join(lines)
