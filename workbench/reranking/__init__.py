"""Second-stage reranking: retrieve N candidates, rerank to the best k, and measure whether it pays.

Rerankers share one contract, `rerank(query, hits, k) -> hits` (with `prepare(query)` for
query-only work), and are built by name through the `RERANKERS` registry,
`Kind.from_config(config, resources)`. Measuring and fine-tuning them sits above the
runner, in `workbench.evaluation` (`evaluate_reranker`, `train_reranker`).

Modules: `base` (the protocol), `cross_encoder`, `maxsim`, `mmr`, `llm` (one reranker each).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..config import RerankingConfig
from ..registry import REGISTRIES, Registry
from ..resources import Resources
from .base import Reranker
from .cross_encoder import CrossEncoderReranker
from .llm import LLMReranker
from .maxsim import MaxSimReranker
from .mmr import MMRReranker

if TYPE_CHECKING:
    from ..embedding import Embedder

__all__ = [
    "Reranker",
    "RERANKERS",
    "make_reranker",
    "CrossEncoderReranker",
    "MaxSimReranker",
    "MMRReranker",
    "LLMReranker",
]

RERANKERS: Registry = REGISTRIES["reranking.kind"]  # name -> reranker class; "none" builds none


def make_reranker(
    config: RerankingConfig, resources: Resources | None = None, *, embedder: Embedder | None = None
) -> Reranker | None:
    """Build the reranker `config.kind` names, `RERANKERS[kind].from_config(config, resources)`; None for "none".

    Args:
        config: the reranking stage's config.
        resources: the pipeline's shared resources (default: none given).
        embedder: the pipeline's embedder, used by "maxsim" and "mmr" (default: the packaged MiniLM);
            replaces `resources.embedder` when given.

    Returns:
        A `Reranker`, or None when `config.kind` is "none".

    Raises:
        ConfigError: an unknown kind (the message lists every known one), a missing model path,
            or a "trained" kind without a model folder.
        ImportError: "llm" without the `local` extra.
    """
    RERANKERS.check(config.kind, "reranking.kind")
    if config.kind == "none":
        return None
    resources = resources or Resources()
    if embedder is not None:
        resources = dataclasses.replace(resources, embedder=embedder)
    return RERANKERS[config.kind].from_config(config, resources)
