"""Second-stage reranking: retrieve N candidates, rerank to the best k, and measure whether it pays.

Rerankers share one contract, `rerank(query, hits, k) -> hits`, and are built from a
`RerankingConfig` by name through `RERANKERS`. Measuring and fine-tuning them sits above the
runner, in `workbench.evaluation` (`evaluate_reranker`, `train_reranker`).

Modules: `base` (the protocol), `cross_encoder`, `maxsim`, `mmr`, `llm` (one reranker each).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ConfigError, RerankingConfig
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

RERANKERS: dict[str, Callable[[RerankingConfig, Embedder | None], Reranker]] = {
    "cross-encoder": CrossEncoderReranker.from_config,
    "trained": CrossEncoderReranker.from_config,
    "maxsim": MaxSimReranker.from_config,
    "mmr": MMRReranker.from_config,
    "llm": LLMReranker.from_config,
}


def make_reranker(config: RerankingConfig, *, embedder: Embedder | None = None) -> Reranker | None:
    """Build the reranker `config.kind` names; None for "none".

    Args:
        config: the reranking stage's config.
        embedder: the pipeline's embedder, used by "maxsim" and "mmr" (default: the packaged MiniLM).

    Returns:
        A `Reranker`, or None when `config.kind` is "none".

    Raises:
        ConfigError: an unknown kind (the message lists every known one), a missing model path,
            or a "trained" kind without a model folder.
        ImportError: "llm" without the `local` extra.
    """
    if config.kind == "none":
        return None
    if config.kind not in RERANKERS:
        raise ConfigError(f"unknown reranking.kind {config.kind!r}; choose one of {sorted([*RERANKERS, 'none'])}")
    if config.kind == "trained" and not (config.model and Path(config.model).expanduser().is_dir()):
        raise ConfigError(
            f"reranking.kind='trained' needs reranking.model to be the folder train_reranker wrote, "
            f"got {config.model!r}; run workbench.evaluation.train_reranker(dataset, folder) first"
        )
    return RERANKERS[config.kind](config, embedder)
