"""Cross-encoder reranking on sentence-transformers' `CrossEncoder`: a hub name or a local folder."""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError, RerankingConfig
from ..types import Hit
from ..validation import shorten
from .base import _check_k, _top_k

if TYPE_CHECKING:
    from ..resources import Resources

__all__ = ["CrossEncoderReranker", "TRUNCATION_WARN_SHARE", "forget_cross_encoder"]

# A cross-encoder that truncates more than this share of the passages of a call gets a warning.
TRUNCATION_WARN_SHARE = 0.5


def _looks_like_path(name: str) -> bool:
    """True for what can only be a local path (a hub name is "model" or "org/model")."""
    return name.startswith((".", "~", "/")) or (os.sep in name and not re.fullmatch(r"[\w.-]+/[\w.-]+", name))



_MODELS: dict[tuple[Any, ...], Any] = {}
_MODELS_LOCK = threading.Lock()


def _load_cross_encoder(model: str, max_length: int, device: str) -> Any:
    """A sentence-transformers CrossEncoder, memoised per process."""
    path = Path(model).expanduser()
    if path.is_dir() and not (path / "config.json").exists():
        raise ConfigError(
            f"reranking.model folder {model!r} holds no model (no config.json); point it at the "
            "folder a CrossEncoder was saved to"
        )
    source = str(path.resolve()) if path.exists() else model
    key = (source, max_length, device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from sentence_transformers import CrossEncoder

            try:
                _MODELS[key] = CrossEncoder(source, max_length=max_length, device=device)
            except OSError as exc:
                raise ConfigError(
                    f"cannot load cross-encoder {model!r}: it is no local folder and the Hugging Face "
                    f"hub did not provide it ({exc}); download it once with hub access, or give a "
                    "local folder (e.g. one from train_reranker)"
                ) from None
        return _MODELS[key]


def forget_cross_encoder(folder: str | Path) -> None:
    """Drop a local folder's models from the process cache, so a rewritten folder is loaded afresh.

    Args:
        folder: a cross-encoder folder (e.g. one `train_reranker` has just replaced).
    """
    source = str(Path(folder).expanduser().resolve())
    with _MODELS_LOCK:
        for key in [key for key in _MODELS if key[0] == source]:
            del _MODELS[key]


class CrossEncoderReranker:
    """Scores each (query, passage) pair jointly with a sentence-transformers CrossEncoder.

    Any Hugging Face cross-encoder name (e.g. `cross-encoder/ms-marco-MiniLM-L6-v2`, which needs
    hub access once) or a local folder, such as one written by `train_reranker`. The model loads
    on first use. Pairs longer than `max_length` tokens are truncated; the first call where most
    are gets a warning with the share (`pairs_seen`/`pairs_truncated` keep the running totals),
    since the model then never sees the passages' ends.
    """

    def __init__(
        self, model: str, *, max_length: int = 256, batch_size: int = 32, device: str = "cpu",
        input_weight: float = 0.0,
    ) -> None:
        if not model.strip():
            raise ConfigError(
                "reranking.model is empty; name a cross-encoder (e.g. "
                "'cross-encoder/ms-marco-MiniLM-L6-v2') or a local folder from train_reranker"
            )
        if _looks_like_path(model) and not Path(model).expanduser().exists():
            raise ConfigError(
                f"reranking.model path {model!r} does not exist; give a saved cross-encoder folder "
                "(train one with workbench.evaluation.train_reranker) or a Hugging Face model name"
            )
        self.model_name = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.input_weight = input_weight
        self.pairs_seen = 0
        self.pairs_truncated = 0
        self._warned = False

    @classmethod
    def from_config(cls, config: RerankingConfig, resources: Resources) -> CrossEncoderReranker:
        """Build from `config.model`, `max_length`, `batch_size`, `device` and `input_weight`.

        Raises:
            ConfigError: kind "trained" whose `model` is not the folder `train_reranker` wrote.
        """
        if config.kind == "trained" and not (config.model and Path(config.model).expanduser().is_dir()):
            raise ConfigError(
                f"reranking.kind='trained' needs reranking.model to be the folder train_reranker wrote, "
                f"got {shorten(config.model)}; run workbench.evaluation.train_reranker(dataset, folder) first"
            )
        return cls(
            config.model, max_length=config.max_length, batch_size=config.batch_size,
            device=config.device, input_weight=config.input_weight,
        )

    @property
    def model(self) -> Any:
        """The underlying CrossEncoder (loaded on first use, shared within the process)."""
        return _load_cross_encoder(self.model_name, self.max_length, self.device)

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Raw relevance scores (logits) of `passages` for `query`, in input order."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        model = self.model
        self._count_truncation(model.tokenizer, query, passages)
        scores = model.predict(
            [(query, p) for p in passages],
            batch_size=self.batch_size,
            activation_fn=_identity(),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(passages), -1)[:, -1]

    def _count_truncation(self, tokenizer: Any, query: str, passages: Sequence[str]) -> None:
        lengths = tokenizer([query] * len(passages), list(passages), truncation=False)["input_ids"]
        truncated = sum(len(ids) > self.max_length for ids in lengths)
        self.pairs_seen += len(passages)
        self.pairs_truncated += truncated
        share = truncated / len(passages)
        if share > TRUNCATION_WARN_SHARE and not self._warned:
            self._warned = True  # once per reranker: the counters keep the running totals
            warnings.warn(
                f"cross-encoder {self.model_name!r} truncated {truncated} of {len(passages)} passages "
                f"({share:.0%}) at max_length={self.max_length} tokens; raise reranking.max_length "
                "(up to the model's limit) or use smaller chunks",
                stacklevel=3,
            )

    def prepare(self, query: str) -> None:
        """No query-only work: a cross-encoder reads the query with each passage."""

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best min(k, len(hits)) hits by cross-encoder score."""
        _check_k(k)
        if not hits:
            return []
        return _top_k(hits, self.score(query, [h.chunk.text for h in hits]).tolist(), k, self.input_weight)


def _identity() -> Any:
    import torch

    return torch.nn.Identity()

