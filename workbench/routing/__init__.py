"""Model routing: send each query to the cheapest model tier that answers it well, and measure it.

Routers read `RoutingConfig.tiers` (model ids from the price table, cheapest first). The
scoring routers (rules, learned, retrieval-aware) estimate, for each tier, the chance that it or
a cheaper one is adequate, and pick the cheapest tier whose estimate reaches `threshold`; the
cascade answers with the cheapest tier first and escalates while the answer's confidence stays
below `threshold`. The evaluation functions turn per-query choices into a confusion matrix, cost
against always-the-strongest-model, quality retained and a threshold sweep (the cost-quality
curve), in the manner of RouteLLM (Ong et al., 2024).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import RoutingConfig
from ..types import Answer
from .base import Router, RoutingError, check_models, choose_tiers
from .evaluation import (
    CostQualityCurve,
    RoutingEvaluation,
    adequate_tiers,
    cascade_tiers,
    evaluate_routing,
    measure_tier_quality,
    sweep_thresholds,
    tier_costs,
    tier_quality,
)
from .labels import DEMO_LABELS, LabelledSet, derive_demo_labels, load_labels, write_demo_labels
from .learned import RETRIEVAL_FEATURES, LearnedRouter, RetrievalRouter, cross_validated_adequacy, retrieval_features
from .routers import CascadeOutcome, CascadeRouter, FixedRouter, QueryFeatures, RulesRouter, query_features, rule_points

if TYPE_CHECKING:
    from ..costs import ModelPrice
    from ..embedding import Embedder
    from ..retrieval import Retriever

__all__ = [
    "Router",
    "RoutingError",
    "ROUTERS",
    "make_router",
    "check_models",
    "FixedRouter",
    "RulesRouter",
    "LearnedRouter",
    "RetrievalRouter",
    "cross_validated_adequacy",
    "CascadeRouter",
    "CascadeOutcome",
    "QueryFeatures",
    "query_features",
    "rule_points",
    "RETRIEVAL_FEATURES",
    "retrieval_features",
    "LabelledSet",
    "load_labels",
    "DEMO_LABELS",
    "derive_demo_labels",
    "write_demo_labels",
    "tier_quality",
    "adequate_tiers",
    "measure_tier_quality",
    "tier_costs",
    "choose_tiers",
    "cascade_tiers",
    "RoutingEvaluation",
    "evaluate_routing",
    "CostQualityCurve",
    "sweep_thresholds",
]


@dataclass(frozen=True, kw_only=True)
class _Resources:
    embedder: Embedder | None
    retriever: Retriever | None
    answer: Callable[[str, str], Answer] | None
    judge: Callable[[str, Answer], float] | None
    count_tokens: Callable[[str], int] | None


def _fixed(config: RoutingConfig, r: _Resources) -> Router:
    return FixedRouter(model=config.model)


def _rules(config: RoutingConfig, r: _Resources) -> Router:
    if r.count_tokens is None:
        from ..costs import estimate_tokens

        count_tokens: Callable[[str], int] = estimate_tokens
    else:
        count_tokens = r.count_tokens
    return RulesRouter(
        tiers=config.tiers,
        cutoffs=config.rule_cutoffs,
        long_query_tokens=config.long_query_tokens,
        comparison_cues=config.comparison_cues,
        reasoning_cues=config.reasoning_cues,
        count_tokens=count_tokens,
        threshold=config.threshold,
    )


def _need_path(config: RoutingConfig, cls: str) -> str:
    if not config.path:
        raise RoutingError(
            f"routing.kind={config.kind!r} needs routing.path, a router saved with "
            f"{cls}(...).fit(load_labels(...)).save(path)"
        )
    return config.path


def _learned(config: RoutingConfig, r: _Resources) -> Router:
    from ..embedding import load_embedder

    path = _need_path(config, "LearnedRouter")
    embedder = r.embedder if r.embedder is not None else load_embedder()
    return LearnedRouter.load(path, tiers=config.tiers, embedder=embedder, threshold=config.threshold)


def _retrieval(config: RoutingConfig, r: _Resources) -> Router:
    if r.retriever is None:
        raise RoutingError("routing.kind='retrieval' needs a retriever: make_router(config, retriever=...)")
    return RetrievalRouter.load(
        _need_path(config, "RetrievalRouter"),
        tiers=config.tiers,
        retriever=r.retriever,
        k=config.retrieval_k,
        place_gap_chars=config.place_gap_chars,
        threshold=config.threshold,
    )


def _cascade(config: RoutingConfig, r: _Resources) -> Router:
    if r.answer is None or r.judge is None:
        raise RoutingError(
            "routing.kind='cascade' needs answer(query, model) -> Answer and judge(query, answer) -> "
            "float: make_router(config, answer=..., judge=...)"
        )
    return CascadeRouter(tiers=config.tiers, answer=r.answer, judge=r.judge, threshold=config.threshold)


ROUTERS: dict[str, Callable[[RoutingConfig, _Resources], Router]] = {
    "fixed": _fixed,
    "rules": _rules,
    "learned": _learned,
    "retrieval": _retrieval,
    "cascade": _cascade,
}


def make_router(
    config: RoutingConfig,
    *,
    prices: Mapping[str, ModelPrice] | None = None,
    embedder: Embedder | None = None,
    retriever: Retriever | None = None,
    answer: Callable[[str, str], Answer] | None = None,
    judge: Callable[[str, Answer], float] | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Router:
    """Build the router `config.kind` names.

    Args:
        config: the routing config.
        prices: the price table; defaults to `workbench.costs.load_prices()`.
        embedder: for "learned" (defaults to the default embedder).
        retriever: for "retrieval".
        answer, judge: for "cascade".
        count_tokens: for "rules" (defaults to `workbench.costs.estimate_tokens`).

    Raises:
        RoutingError: an unknown kind (lists the known ones), a model missing from the price
            table, or a missing resource or saved router.
    """
    factory = ROUTERS.get(config.kind)
    if factory is None:
        raise RoutingError(f"unknown router {config.kind!r}; choose one of {sorted(ROUTERS)}")
    check_models([config.model] if config.kind == "fixed" else config.tiers, prices)
    return factory(config, _Resources(embedder=embedder, retriever=retriever, answer=answer, judge=judge,
                                      count_tokens=count_tokens))
