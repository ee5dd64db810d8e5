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

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..config import RoutingConfig
from ..registry import REGISTRIES, Registry
from ..resources import Resources
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
    from ..prices import ModelPrice
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


ROUTERS: Registry = REGISTRIES["routing.kind"]  # name -> router class (see workbench.registry)


def make_router(
    config: RoutingConfig,
    resources: Resources | None = None,
    *,
    prices: Mapping[str, ModelPrice] | None = None,
    embedder: Embedder | None = None,
    retriever: Retriever | None = None,
    answer: Callable[[str, str], Answer] | None = None,
    judge: Callable[[str, Answer], float] | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Router:
    """Build the router `config.kind` names, `ROUTERS[kind].from_config(config, resources)`.

    Args:
        config: the routing config.
        resources: the pipeline's shared resources; `resources.model` is the fixed router's
            model (`generation.model`). The keyword arguments below replace its fields:
        prices: the price table; defaults to `workbench.prices.load_prices()`.
        embedder: for "learned" (defaults to the default embedder).
        retriever: for "retrieval".
        answer, judge: for "cascade".
        count_tokens: for "rules" (defaults to `workbench.tokens.estimate_tokens`).

    Raises:
        RoutingError: an unknown kind (lists the known ones), a model missing from the price
            table, or a missing resource or saved router.
    """
    try:
        ROUTERS.check(config.kind, "router")
    except ValueError as exc:
        raise RoutingError(str(exc)) from None
    given = {"prices": prices, "embedder": embedder, "retriever": retriever, "answer": answer, "judge": judge,
             "count_tokens": count_tokens}
    resources = dataclasses.replace(resources or Resources(), **{k: v for k, v in given.items() if v is not None})
    check_models([resources.model] if config.kind == "fixed" else config.tiers, resources.prices)
    return ROUTERS[config.kind].from_config(config, resources)
