"""Second-stage reranking: retrieve N candidates, rerank to the best k, and measure whether it pays.

Rerankers share one contract, `rerank(query, hits, k) -> hits`, and are built from a
`RerankingConfig` by name through `RERANKERS`. `evaluate_reranker` scores a reranker against
its input ranking at several candidate depths, query by query, with a paired significance test;
`train_reranker` fine-tunes a cross-encoder on a dataset's own judgements.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from .config import ChunkingConfig, ConfigError, PipelineConfig, RerankingConfig, RetrievalConfig
from .types import Chunk, Hit

if TYPE_CHECKING:
    import pandas as pd

    from .datasets import Dataset
    from .embedding import Embedder, VectorCache

__all__ = [
    "Reranker",
    "RERANKERS",
    "make_reranker",
    "CrossEncoderReranker",
    "MaxSimReranker",
    "MMRReranker",
    "LLMReranker",
    "Candidates",
    "retrieve_candidates",
    "DepthSummary",
    "RerankEvaluation",
    "evaluate_reranker",
    "TrainConfig",
    "TrainingReport",
    "train_reranker",
]

# A cross-encoder that truncates more than this share of the passages of a call gets a warning.
TRUNCATION_WARN_SHARE = 0.5
# Rank fusion constant for `input_weight` (as in reciprocal rank fusion).
_RRF_K = 60


class Reranker(Protocol):
    """Reorders first-stage hits for a query."""

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best min(k, len(hits)) of `hits`, as new `Hit`s with new scores and ranks 1..k."""
        ...


# --- shared helpers -----------------------------------------------------------------------


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}; ask for at least one reranked hit")


def _top_k(hits: Sequence[Hit], scores: Sequence[float], k: int, input_weight: float = 0.0) -> list[Hit]:
    """Hits sorted by score (ties keep input order), cut to k and ranked 1..k.

    With `input_weight` > 0 the reranker's order is fused with the input order by weighted
    reciprocal rank fusion, so the first stage's signal (e.g. BM25's in a hybrid) is not discarded.
    """
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    if input_weight > 0:
        rank = {i: r for r, i in enumerate(order)}
        # Input position, not `Hit.rank`: callers may pass any slice of a ranking.
        fused = [
            (1 - input_weight) / (_RRF_K + rank[i] + 1) + input_weight / (_RRF_K + i + 1)
            for i in range(len(hits))
        ]
        scores = fused
        order = sorted(range(len(hits)), key=lambda i: -fused[i])
    return [Hit(chunk=hits[i].chunk, score=float(scores[i]), rank=r + 1) for r, i in enumerate(order[:k])]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~", "/")) or os.sep in name and not re.fullmatch(r"[\w.-]+/[\w.-]+", name)


# --- cross-encoder ------------------------------------------------------------------------

_MODELS: dict[tuple[Any, ...], Any] = {}
_MODELS_LOCK = threading.Lock()


def _load_cross_encoder(model: str, max_length: int, device: str) -> Any:
    """A sentence-transformers CrossEncoder, memoised per process."""
    path = Path(model).expanduser()
    if _looks_like_path(model) and not path.exists():
        raise ConfigError(
            f"reranking.model path {model!r} does not exist; give a saved cross-encoder folder "
            "(train one with workbench.reranking.train_reranker) or a Hugging Face model name"
        )
    if path.is_dir() and not (path / "config.json").exists():
        raise ConfigError(
            f"reranking.model folder {model!r} holds no model (no config.json); point it at the "
            "folder a CrossEncoder was saved to"
        )
    key = (str(path.resolve()) if path.exists() else model, max_length, device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from sentence_transformers import CrossEncoder

            _MODELS[key] = CrossEncoder(str(path) if path.exists() else model, max_length=max_length, device=device)
        return _MODELS[key]


class CrossEncoderReranker:
    """Scores each (query, passage) pair jointly with a sentence-transformers CrossEncoder.

    Any Hugging Face cross-encoder name (e.g. `cross-encoder/ms-marco-MiniLM-L6-v2`, which needs
    hub access once) or a local folder, such as one written by `train_reranker`. The model loads
    on first use. Pairs longer than `max_length` tokens are truncated; when most are, a warning
    gives the share, since the model then never sees the passages' ends.
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
                "(train one with workbench.reranking.train_reranker) or a Hugging Face model name"
            )
        self.model_name = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.input_weight = input_weight
        self.pairs_seen = 0
        self.pairs_truncated = 0

    @classmethod
    def from_config(cls, config: RerankingConfig, embedder: Embedder | None = None) -> CrossEncoderReranker:
        """Build from `config.model`, `max_length`, `batch_size`, `device` and `input_weight`."""
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
        if share > TRUNCATION_WARN_SHARE:
            warnings.warn(
                f"cross-encoder {self.model_name!r} truncated {truncated} of {len(passages)} passages "
                f"({share:.0%}) at max_length={self.max_length} tokens; raise reranking.max_length "
                "(up to the model's limit) or use smaller chunks",
                stacklevel=3,
            )

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best min(k, len(hits)) hits by cross-encoder score."""
        _check_k(k)
        if not hits:
            return []
        return _top_k(hits, self.score(query, [h.chunk.text for h in hits]).tolist(), k, self.input_weight)


def _identity() -> Any:
    import torch

    return torch.nn.Identity()


# --- late interaction (MaxSim) ------------------------------------------------------------

_PUNCT = re.compile(r"^\W+$")


def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


class MaxSimReranker:
    """Late interaction: score = sum over query tokens of the best cosine over the passage's tokens.

    Token embeddings come from the embedding model's last layer, L2-normalised per token.
    Passage token embeddings are cached in a content-addressed `VectorCache` (key: model, max
    length, exact text), so after the first sight of a passage reranking costs one forward pass
    of the query. Which tokens count matters (issue 3): `query_tokens` picks the query's tokens
    ("all", "content": no [CLS]/[SEP]/punctuation, "no-stopwords": content minus English
    stopwords); passage-side [CLS]/[SEP]/punctuation never count; `idf` weights each query token
    by its inverse document frequency among the candidates (the tokens that tell them apart).
    """

    def __init__(
        self, embedder: Embedder, *, query_tokens: Literal["all", "content", "no-stopwords"] = "no-stopwords",
        idf: bool = True, max_length: int = 256, batch_size: int = 32, input_weight: float = 0.0,
        cache: VectorCache | None = None,
    ) -> None:
        from .embedding import VectorCache
        from .io import cache_dir

        self.embedder = embedder
        self.query_tokens = query_tokens
        self.idf = idf
        self.max_length = max_length
        self.batch_size = batch_size
        self.input_weight = input_weight
        # A file of its own: token matrices are ~100x larger than pooled vectors.
        self.cache = cache if cache is not None else VectorCache(cache_dir() / "token_embeddings.sqlite")
        self._namespace = f"maxsim|{embedder.model_id}|max_length={max_length}"
        self._stop = _stopwords()

    @classmethod
    def from_config(cls, config: RerankingConfig, embedder: Embedder | None = None) -> MaxSimReranker:
        """Build from `config.maxsim_query_tokens`, `maxsim_idf`, `max_length`, `batch_size`, `input_weight`."""
        return cls(
            embedder or _default_embedder(), query_tokens=config.maxsim_query_tokens,
            idf=config.maxsim_idf, max_length=config.max_length, batch_size=config.batch_size,
            input_weight=config.input_weight,
        )

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        tokenizer = self.embedder.tokenizer
        return tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def _forward(self, texts: Sequence[str]) -> list[np.ndarray]:
        import torch

        model = self.embedder.model
        tokenizer, bert = model.tokenizer, model[0].model
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = tokenizer(
                    list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                ).to(model.device)
                states = torch.nn.functional.normalize(bert(**batch).last_hidden_state, dim=-1)
                for row, n in zip(states, batch["attention_mask"].sum(dim=1).tolist()):
                    out.append(row[:n].float().cpu().numpy())
        return out

    def passage_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Normalised token embeddings of each text (every token, [CLS] and [SEP] included), cached."""
        unique = list(dict.fromkeys(texts))
        found = dict(zip(unique, self.cache.get_many(self._namespace, unique)))
        missing = sorted((t for t, v in found.items() if v is None), key=len, reverse=True)
        if missing:
            arrays = self._forward(missing)
            self.cache.put_many(self._namespace, missing, arrays)
            found.update(zip(missing, arrays))
        return [found[t] for t in texts]  # type: ignore[misc]

    def _keep(self, ids: Sequence[int], side: Literal["query", "passage"]) -> np.ndarray:
        tokenizer = self.embedder.tokenizer
        tokens = tokenizer.convert_ids_to_tokens(list(ids))
        special = set(tokenizer.all_special_ids)
        mode = self.query_tokens if side == "query" else "content"
        keep = np.ones(len(ids), dtype=bool)
        if mode == "all":
            return keep
        for i, (tid, tok) in enumerate(zip(ids, tokens)):
            if tid in special or _PUNCT.match(tok):
                keep[i] = False
            elif mode == "no-stopwords" and tok in self._stop:
                # A stopword only when it is a whole word, not the head of a longer word ("a ##ir").
                nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
                keep[i] = nxt.startswith("##")
        if not keep.any():  # a query of stopwords only: fall back to its content tokens
            return self._keep(ids, side) if mode == "no-stopwords" and side == "query" and False else ~np.isin(
                np.asarray(ids), list(special)
            )
        return keep

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """MaxSim scores of `passages` for `query` (weighted mean over query tokens), input order."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        q_ids = self._tokenize([query])[0]
        q_keep = self._keep(q_ids, "query")
        q = self._forward([query])[0][q_keep]
        p_ids = self._tokenize(passages)
        p_vecs = self.passage_tokens(passages)
        weights = np.ones(len(q), dtype=np.float32)
        if self.idf:
            kept_ids = np.asarray(q_ids)[q_keep]
            n = len(passages)
            df = np.array([sum(t in set_ for set_ in map(set, p_ids)) for t in kept_ids], dtype=np.float32)
            weights = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        scores = np.empty(len(passages), dtype=np.float32)
        for j, (ids, vecs) in enumerate(zip(p_ids, p_vecs)):
            keep = self._keep(ids, "passage")
            sims = q @ vecs[keep].T if keep.any() else np.zeros((len(q), 1), dtype=np.float32)
            scores[j] = float(weights @ sims.max(axis=1)) / max(float(weights.sum()), 1e-9)
        return scores

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best min(k, len(hits)) hits by MaxSim score."""
        _check_k(k)
        if not hits:
            return []
        return _top_k(hits, self.score(query, [h.chunk.text for h in hits]).tolist(), k, self.input_weight)


def _default_embedder() -> Embedder:
    from .embedding import load_embedder

    return load_embedder()
