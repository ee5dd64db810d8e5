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
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from .config import ConfigError, PipelineConfig, RerankingConfig, RetrievalConfig
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
    "RerankRow",
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
    """True for what can only be a local path (a hub name is "model" or "org/model")."""
    return name.startswith((".", "~", "/")) or (os.sep in name and not re.fullmatch(r"[\w.-]+/[\w.-]+", name))


# --- cross-encoder ------------------------------------------------------------------------

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
                "(train one with workbench.reranking.train_reranker) or a Hugging Face model name"
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
        if share > TRUNCATION_WARN_SHARE and not self._warned:
            self._warned = True  # once per reranker: the counters keep the running totals
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


# Passages' content-token ids and embeddings already read this process: (namespace, text) -> arrays.
# Bounded by bytes; reading ~200 token vectors per passage back from SQLite would cost more than
# the scoring itself.
_PASSAGE_MEMO: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_PASSAGE_MEMO_BYTES = [0]
_PASSAGE_MEMO_LIMIT = 1 << 30
_PASSAGE_MEMO_LOCK = threading.Lock()


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
        self, embedder: Embedder, *, query_tokens: Literal["all", "content", "no-stopwords"] = "content",
        idf: bool = False, max_length: int = 256, batch_size: int = 32, input_weight: float = 0.0,
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
        self._vocab_masks: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

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

    def _vocab(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per token id: counts as content (not special, not punctuation), is a stopword, continues a word."""
        if self._vocab_masks is None:
            tokenizer = self.embedder.tokenizer
            tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
            special = set(tokenizer.all_special_ids)
            content = np.array([i not in special and not _PUNCT.match(t) for i, t in enumerate(tokens)])
            stop = np.array([t in self._stop for t in tokens])
            continues = np.array([t.startswith("##") for t in tokens])
            self._vocab_masks = (content, stop, continues)
        return self._vocab_masks

    def _keep(self, ids: Sequence[int], mode: Literal["all", "content", "no-stopwords"]) -> np.ndarray:
        """Which of the tokens `ids` count under `mode`; never none of them."""
        ids_ = np.asarray(ids)
        if mode == "all":
            return np.ones(len(ids_), dtype=bool)
        content, stop, continues = self._vocab()
        keep = content[ids_]
        if mode == "no-stopwords":
            # A stopword only as a whole word, not as the head of a longer one ("a ##ir").
            next_continues = np.append(continues[ids_][1:], False)
            without = keep & ~(stop[ids_] & ~next_continues)
            keep = without if without.any() else keep
        return keep if keep.any() else np.ones(len(ids_), dtype=bool)

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """MaxSim scores of `passages` for `query` (weighted mean over query tokens), input order."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        q_ids = np.asarray(self._tokenize([query])[0])
        q_keep = self._keep(q_ids, self.query_tokens)
        q = self._forward([query])[0][q_keep]
        content = self._content_tokens(passages)
        weights = np.ones(len(q), dtype=np.float32)
        if self.idf:
            kept = q_ids[q_keep]
            df = np.zeros(len(kept), dtype=np.float32)
            for ids, _ in content:
                df += np.isin(kept, ids)
            n = len(passages)
            weights = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        # One matrix product over all passages' tokens, then the best token within each passage.
        sims = q @ np.concatenate([vecs for _, vecs in content]).T
        starts = np.cumsum([0] + [len(vecs) for _, vecs in content[:-1]])
        best = np.maximum.reduceat(sims, starts, axis=1)
        return ((weights @ best) / max(float(weights.sum()), 1e-9)).astype(np.float32)

    def _content_tokens(self, passages: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ids, embeddings) of each passage's content tokens, through the in-process memo."""
        keys = [(self._namespace, p) for p in passages]
        with _PASSAGE_MEMO_LOCK:
            found = {key: _PASSAGE_MEMO[key] for key in keys if key in _PASSAGE_MEMO}
            for key in found:
                _PASSAGE_MEMO.move_to_end(key)
        missing = list(dict.fromkeys(p for (_, p) in keys if (self._namespace, p) not in found))
        if missing:
            ids_all = self._tokenize(missing)
            for text, ids, vecs in zip(missing, ids_all, self.passage_tokens(missing)):
                keep = self._keep(ids, "content")
                found[(self._namespace, text)] = (np.asarray(ids)[keep], np.ascontiguousarray(vecs[keep]))
            with _PASSAGE_MEMO_LOCK:
                for text in missing:
                    key = (self._namespace, text)
                    if key not in _PASSAGE_MEMO:
                        _PASSAGE_MEMO[key] = found[key]
                        _PASSAGE_MEMO_BYTES[0] += found[key][1].nbytes
                while _PASSAGE_MEMO_BYTES[0] > _PASSAGE_MEMO_LIMIT and _PASSAGE_MEMO:
                    _PASSAGE_MEMO_BYTES[0] -= _PASSAGE_MEMO.popitem(last=False)[1][1].nbytes
        return [found[key] for key in keys]

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best min(k, len(hits)) hits by MaxSim score."""
        _check_k(k)
        if not hits:
            return []
        return _top_k(hits, self.score(query, [h.chunk.text for h in hits]).tolist(), k, self.input_weight)


def _default_embedder() -> Embedder:
    from .embedding import load_embedder

    return load_embedder()


# --- maximal marginal relevance -----------------------------------------------------------


class MMRReranker:
    """Maximal marginal relevance: trade relevance against redundancy with what is already chosen.

    Relevance is the input score min-max scaled to [0, 1] (so a hybrid's BM25 signal is kept,
    not replaced by dense cosine); redundancy is the largest cosine between a passage's
    embedding and those already picked. Each pick maximises
    `lam * relevance - (1 - lam) * redundancy` (Carbonell & Goldstein, 1998); `lam=1` keeps the
    input order. Passage embeddings come from the embedder's cache, so they cost nothing after
    indexing.
    """

    def __init__(self, embedder: Embedder, *, lam: float = 0.7) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"reranking.mmr_lambda={lam} must lie in [0, 1]")
        self.embedder = embedder
        self.lam = lam

    @classmethod
    def from_config(cls, config: RerankingConfig, embedder: Embedder | None = None) -> MMRReranker:
        """Build from `config.mmr_lambda`."""
        return cls(embedder or _default_embedder(), lam=config.mmr_lambda)

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """Pick min(k, len(hits)) hits greedily by marginal relevance; scores are the MMR values."""
        _check_k(k)
        if not hits:
            return []
        raw = np.array([h.score for h in hits], dtype=np.float64)
        span = raw.max() - raw.min()
        relevance = (raw - raw.min()) / span if span > 0 else np.ones(len(hits))
        vectors = self.embedder.embed([h.chunk.text for h in hits]).astype(np.float64)
        similarity = vectors @ vectors.T
        redundancy = np.zeros(len(hits))
        chosen: list[int] = []
        values: list[float] = []
        free = np.ones(len(hits), dtype=bool)
        for _ in range(min(k, len(hits))):
            mmr = np.where(free, self.lam * relevance - (1 - self.lam) * redundancy, -np.inf)
            best = int(np.argmax(mmr))  # first maximum: ties keep input order
            chosen.append(best)
            values.append(float(mmr[best]))
            free[best] = False
            redundancy = np.maximum(redundancy, similarity[best])
        return [Hit(chunk=hits[i].chunk, score=v, rank=r + 1) for r, (i, v) in enumerate(zip(chosen, values))]


# --- pointwise LLM ------------------------------------------------------------------------

# A completion prompt: the packaged Gemma 3 270M is a base model, without a chat template.
_LLM_PROMPT = (
    "Decide whether a passage answers a question.\n\n"
    "Question: {query}\nPassage: {passage}\n"
    "Does the passage answer the question (yes or no)? Answer:"
)


class LLMReranker:
    """Pointwise LLM relevance: P("yes") to "does the passage answer the question?", on a local GGUF.

    Runs on llama-cpp-python (the `local` extra) with the packaged Gemma 3 270M by default.
    The probability is softmax over the "yes"/"no" next-token logits only, so the model's other
    continuations do not dilute it. Passages are cut to `max_length` model tokens.
    """

    def __init__(self, model: str = "", *, max_length: int = 256, input_weight: float = 0.0) -> None:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise ImportError(
                "the 'llm' reranker needs llama-cpp-python: install the local extra with "
                "`pip install -e '.[local]'`"
            ) from None
        if model:
            path = model
        else:
            from .generation import _gemma_path  # assembles the packaged GGUF once

            path = _gemma_path()
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"reranking.model {path!r} is not a file; give the path of a .gguf model")
        self.model_path = str(Path(path).expanduser())
        self.max_length = max_length
        self.input_weight = input_weight
        self._llm: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: RerankingConfig, embedder: Embedder | None = None) -> LLMReranker:
        """Build from `config.model` (a .gguf path; empty: the packaged Gemma), `max_length`, `input_weight`."""
        return cls(config.model, max_length=config.max_length, input_weight=config.input_weight)

    def _model(self) -> Any:
        if self._llm is None:
            from llama_cpp import Llama

            self._llm = Llama(
                model_path=self.model_path, n_ctx=self.max_length + 512, verbose=False, seed=0,
                n_threads=os.cpu_count() or 2,
            )
            self._yes_no = tuple(self._llm.tokenize(w.encode(), add_bos=False)[0] for w in (" yes", " no"))
        return self._llm

    def probability(self, query: str, passage: str) -> float:
        """P("yes") for one (query, passage) pair, renormalised over "yes" and "no"."""
        import llama_cpp

        with self._lock:
            llm = self._model()
            passage_ids = llm.tokenize(passage.encode(), add_bos=False)[: self.max_length]
            text = _LLM_PROMPT.format(query=query, passage=llm.detokenize(passage_ids).decode(errors="ignore"))
            llm.reset()
            llm.eval(llm.tokenize(text.encode(), add_bos=True))
            # The last position's logits, read from the context (llama-cpp-python keeps
            # `scores` only with logits_all=True, which costs n_ctx x vocabulary floats).
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
            yes, no = float(logits[self._yes_no[0]]), float(logits[self._yes_no[1]])
        return 1.0 / (1.0 + math.exp(no - yes))

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best min(k, len(hits)) hits by P("yes")."""
        _check_k(k)
        if not hits:
            return []
        return _top_k(hits, [self.probability(query, h.chunk.text) for h in hits], k, self.input_weight)


# --- the table ----------------------------------------------------------------------------

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
            f"got {config.model!r}; run workbench.reranking.train_reranker(dataset, folder) first"
        )
    return RERANKERS[config.kind](config, embedder)


# --- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Candidates:
    """First-stage rankings of a dataset's queries, to rerank at several depths.

    `unit` says what relevance is judged on: "document" (qrels; chunks count at their document's
    best rank) or "chunk" (span-annotated sets; a chunk is relevant when it overlaps a reference
    span of the query). `relevance[qid]` maps those ids to graded relevance.
    """

    dataset: str
    unit: Literal["document", "chunk"]
    depth: int
    chunks: tuple[Chunk, ...]
    queries: Mapping[str, str]
    hits: Mapping[str, tuple[Hit, ...]]
    relevance: Mapping[str, Mapping[str, int]]
    retrieval_ms: float


def _chunk_relevance(dataset: Dataset, chunks: Sequence[Chunk], qids: Sequence[str]) -> dict[str, dict[str, int]]:
    by_doc: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    relevance: dict[str, dict[str, int]] = {}
    for qid in qids:
        relevance[qid] = {
            c.id: 1
            for s in dataset.spans.get(qid, ())
            for c in by_doc.get(s.doc_id, ())
            if c.start < s.end and s.start < c.end
        }
    return relevance


def retrieve_candidates(
    config: PipelineConfig, dataset: Dataset, *, depth: int = 100, query_ids: Sequence[str] | None = None
) -> Candidates:
    """Chunk, index and retrieve the top `depth` hits of each query with `config`'s first stage.

    Args:
        config: chunking, embedding and retrieval settings (its reranking stage is ignored).
        dataset: documents, queries and judgements; span-annotated sets are judged per chunk.
        depth: how many hits to keep per query (the largest N to evaluate).
        query_ids: which queries (default: every query with judgements).

    Returns:
        `Candidates` for `evaluate_reranker` and `train_reranker`.

    Raises:
        ValueError: depth <= 0, depth larger than the number of chunks, or unknown query ids.
    """
    import dataclasses

    from .experiment import build_pipeline

    if depth <= 0:
        raise ValueError(f"depth must be positive, got {depth}")
    first_stage = dataclasses.replace(config, reranking=RerankingConfig(kind="none"))
    pipeline = build_pipeline(first_stage, dataset)
    if depth > len(pipeline.chunks):
        raise ValueError(
            f"depth={depth} is larger than the corpus ({len(pipeline.chunks)} chunks of "
            f"{dataset.name!r}); retrieve at most {len(pipeline.chunks)} candidates"
        )
    qids = list(query_ids) if query_ids is not None else dataset.evaluated_queries
    unknown = [q for q in qids if q not in dataset.queries]
    if unknown:
        raise ValueError(f"unknown query ids {unknown[:5]}; pick ids from dataset.queries")
    t0 = time.perf_counter()
    many = getattr(pipeline.retriever, "retrieve_many", None)
    texts = [dataset.queries[q] for q in qids]
    ranked = many(texts, depth) if many else [pipeline.retriever.retrieve(t, depth) for t in texts]
    ms = 1000 * (time.perf_counter() - t0) / max(len(qids), 1)
    unit: Literal["document", "chunk"] = "chunk" if dataset.spans else "document"
    if unit == "chunk":
        relevance = _chunk_relevance(dataset, pipeline.chunks, qids)
    else:
        relevance = {q: dict(dataset.qrels.get(q, {})) for q in qids}
    return Candidates(
        dataset=dataset.name, unit=unit, depth=depth, chunks=pipeline.chunks,
        queries={q: dataset.queries[q] for q in qids},
        hits={q: tuple(h) for q, h in zip(qids, ranked)}, relevance=relevance, retrieval_ms=ms,
    )


def _ranked_ids(hits: Sequence[Hit], unit: str) -> list[str]:
    if unit == "chunk":
        return [h.chunk.id for h in hits]
    return list(dict.fromkeys(h.chunk.doc_id for h in hits))


@dataclass(frozen=True, kw_only=True)
class RerankRow:
    """One query at one candidate depth: metrics before and after reranking, and the time added."""

    query_id: str
    depth: int
    ndcg_before: float
    ndcg_after: float
    precision_before: float
    precision_after: float
    recall_before: float
    recall_after: float
    rerank_ms: float


@dataclass(frozen=True, kw_only=True)
class DepthSummary:
    """A reranker at one candidate depth N, against its input ranking, over all queries.

    `p_value` is the two-sided paired randomisation (sign-flip) test of the per-query nDCG@k
    differences (`workbench.stats`); `ci_low`/`ci_high` a 95% paired bootstrap interval of the
    mean difference. `verdict` is "helps"/"hurts" when p < 0.05, else "helps (not significant)",
    "hurts (not significant)" or "no change". `candidate_recall` is recall@N of the input, the
    ceiling any reranker at this depth can reach.
    """

    depth: int
    k: int
    queries: int
    ndcg_before: float
    ndcg_after: float
    precision_before: float
    precision_after: float
    recall_before: float
    recall_after: float
    candidate_recall: float
    wins: int
    losses: int
    ties: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    ms_per_query: float
    verdict: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class RerankEvaluation:
    """A reranker's effect at each candidate depth (`summaries`), and the per-query rows behind it."""

    name: str
    dataset: str
    unit: str
    k: int
    summaries: tuple[DepthSummary, ...]
    rows: tuple[RerankRow, ...] = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per depth N: metrics before/after, wins/losses, p-value, ms added, verdict."""
        import dataclasses

        import pandas as pd

        return pd.DataFrame([{"reranker": self.name, **dataclasses.asdict(s)} for s in self.summaries])

    def per_query_frame(self) -> pd.DataFrame:
        """One row per (query, depth)."""
        import dataclasses

        import pandas as pd

        return pd.DataFrame([{"reranker": self.name, **dataclasses.asdict(r)} for r in self.rows])


ALPHA = 0.05


def _verdict(diff: float, p_value: float) -> str:
    if abs(diff) < 1e-12:
        return "no change"
    word = "helps" if diff > 0 else "hurts"
    return word if p_value < ALPHA else f"{word} (not significant)"


def evaluate_reranker(
    reranker: Reranker,
    candidates: Candidates,
    *,
    depths: Sequence[int] = (10, 20, 50, 100),
    k: int = 10,
    name: str = "",
    query_ids: Sequence[str] | None = None,
) -> RerankEvaluation:
    """Rerank each query's top N candidates to k, for each N in `depths`, and compare with the input.

    "Before" is the input's own top k; "after" is the reranker's top k of the input's top N.
    nDCG@k, precision@k and recall@k are computed per query; wins and losses count queries
    whose nDCG@k rose or fell; significance is a paired randomisation test over queries. The
    time is the reranker's wall time per query (one untimed call first loads models).

    Args:
        reranker: what to evaluate.
        candidates: first-stage rankings from `retrieve_candidates`, at least max(depths) deep.
        depths: candidate depths N to rerank from.
        k: how many reranked hits are kept and scored.
        name: a label for the result.
        query_ids: a subset of the candidates' queries (e.g. a held-out split).

    Returns:
        A `RerankEvaluation`; `.to_frame()` has one row per depth.

    Raises:
        ValueError: k <= 0, a depth smaller than k, a depth deeper than the candidates, or no queries.
    """
    from .metrics import ndcg_at_k, precision_at_k, recall_at_k
    from .stats import compare_paired

    _check_k(k)
    if not depths:
        raise ValueError("depths is empty; give at least one candidate depth N, e.g. (10, 20, 50, 100)")
    for n in depths:
        if n < k:
            raise ValueError(
                f"depth N={n} is smaller than k={k}; a reranker only reorders the N candidates it is "
                f"given, so use depths >= {k} or a smaller k"
            )
        if n > candidates.depth:
            raise ValueError(
                f"depth N={n} is deeper than the {candidates.depth} candidates retrieved; call "
                f"retrieve_candidates(..., depth={max(depths)}) or drop N={n}"
            )
    qids = list(query_ids) if query_ids is not None else list(candidates.hits)
    missing = [q for q in qids if q not in candidates.hits]
    if missing:
        raise ValueError(f"query ids {missing[:5]} have no candidates; pick ids from candidates.hits")
    if not qids:
        raise ValueError("no queries to evaluate; the candidates hold none")
    unit = candidates.unit
    first = candidates.hits[qids[0]]
    if first:
        reranker.rerank(candidates.queries[qids[0]], first[: min(depths)], k)  # loads models, untimed
    rows: list[RerankRow] = []
    summaries: list[DepthSummary] = []
    for n in depths:
        depth_rows = []
        for qid in qids:
            rel = candidates.relevance.get(qid, {})
            hits = candidates.hits[qid]
            before = _ranked_ids(hits[:k], unit)
            t0 = time.perf_counter()
            after_hits = reranker.rerank(candidates.queries[qid], hits[:n], k) if hits else []
            ms = 1000 * (time.perf_counter() - t0)
            after = _ranked_ids(after_hits, unit)
            depth_rows.append(
                RerankRow(
                    query_id=qid, depth=n,
                    ndcg_before=ndcg_at_k(rel, before, k), ndcg_after=ndcg_at_k(rel, after, k),
                    precision_before=precision_at_k(rel, before, k), precision_after=precision_at_k(rel, after, k),
                    recall_before=recall_at_k(rel, before, k), recall_after=recall_at_k(rel, after, k),
                    rerank_ms=ms,
                )
            )
        rows.extend(depth_rows)
        cmp = compare_paired(
            {r.query_id: r.ndcg_before for r in depth_rows},
            {r.query_id: r.ndcg_after for r in depth_rows},
            metric=f"ndcg@{k}",
        )

        def mean(attr: str, rows_: Sequence[RerankRow] = depth_rows) -> float:
            return float(np.mean([getattr(r, attr) for r in rows_]))

        candidate_recall = float(np.mean([
            recall_at_k(candidates.relevance.get(q, {}), _ranked_ids(candidates.hits[q][:n], unit), n) for q in qids
        ]))
        summaries.append(
            DepthSummary(
                depth=n, k=k, queries=len(depth_rows),
                ndcg_before=mean("ndcg_before"), ndcg_after=mean("ndcg_after"),
                precision_before=mean("precision_before"), precision_after=mean("precision_after"),
                recall_before=mean("recall_before"), recall_after=mean("recall_after"),
                candidate_recall=candidate_recall,
                wins=sum(r.ndcg_after > r.ndcg_before + 1e-12 for r in depth_rows),
                losses=sum(r.ndcg_after < r.ndcg_before - 1e-12 for r in depth_rows),
                ties=sum(abs(r.ndcg_after - r.ndcg_before) <= 1e-12 for r in depth_rows),
                mean_diff=cmp.mean_diff, ci_low=cmp.ci_low, ci_high=cmp.ci_high, p_value=cmp.p_value,
                test="paired randomisation (sign-flip), two-sided" + (", exact" if cmp.exact else ""),
                ms_per_query=mean("rerank_ms"),
                verdict=_verdict(cmp.mean_diff, cmp.p_value),
                note=cmp.note,
            )
        )
    return RerankEvaluation(
        name=name or type(reranker).__name__, dataset=candidates.dataset, unit=unit, k=k,
        summaries=tuple(summaries), rows=tuple(rows),
    )


# --- fine-tuning a cross-encoder on the user's judgements ----------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How `train_reranker` builds pairs and fine-tunes.

    Per training query: up to `positives` relevant chunks (label: grade / highest grade), up to
    `negatives` hard negatives (the best-ranked non-relevant chunks of BM25's top `depth`) and
    `random_negatives` non-relevant chunks drawn at random: with hard negatives alone the model
    learns that word overlap means "not relevant". Each query's passages form one softmax group
    (ListNet loss: the target is the grades, normalised); `queries_per_step` groups make a step.
    `heldout` is the share of queries kept out of training to test the result, at N=`depth`.
    """

    base_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    heldout: float = 0.2
    depth: int = 50
    positives: int = 8
    negatives: int = 8
    random_negatives: int = 4
    epochs: int = 1
    max_length: int = 256
    queries_per_step: int = 2
    learning_rate: float = 5e-5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.heldout < 1.0:
            raise ConfigError(f"heldout={self.heldout} must lie in (0, 1), e.g. 0.2")
        for name in ("depth", "positives", "negatives", "epochs", "max_length", "queries_per_step"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.random_negatives < 0:
            raise ConfigError(f"random_negatives must be >= 0, got {self.random_negatives}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclass(frozen=True, kw_only=True)
class TrainingReport:
    """What `train_reranker` did, and whether the result beats its input ranking on held-out queries."""

    model_dir: str
    train_queries: tuple[str, ...]
    heldout_queries: tuple[str, ...]
    positives: int
    negatives: int
    train_seconds: float
    evaluation: RerankEvaluation

    @property
    def beats_input(self) -> bool:
        """True when held-out nDCG@k after reranking is higher than the input's."""
        s = self.evaluation.summaries[0]
        return s.ndcg_after > s.ndcg_before

    def summary(self) -> str:
        """One line: pairs, time, held-out nDCG before and after, p-value, verdict."""
        s = self.evaluation.summaries[0]
        return (
            f"trained on {len(self.train_queries)} queries ({self.positives} positive, {self.negatives} "
            f"negative pairs) in {self.train_seconds:.0f} s; held-out ({len(self.heldout_queries)} queries) "
            f"nDCG@{s.k} at N={s.depth}: {s.ndcg_before:.4f} -> {s.ndcg_after:.4f}, "
            f"W/L {s.wins}/{s.losses}, p={s.p_value:.4f}: {s.verdict}"
        )


# One query's training group: the query, (passage, target weight) pairs, positives first.
Group = tuple[str, list[tuple[str, float]]]


def _training_groups(candidates: Candidates, qids: Sequence[str], config: TrainConfig) -> tuple[list[Group], int, int]:
    from .retrieval import build_retriever

    bm25 = build_retriever(RetrievalConfig(kind="bm25"), candidates.chunks)
    by_doc: dict[str, list[Chunk]] = {}
    for c in candidates.chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    by_id = {c.id: c for c in candidates.chunks}
    ident = (lambda c: c.doc_id) if candidates.unit == "document" else (lambda c: c.id)
    rng = random.Random(config.seed)
    groups: list[Group] = []
    n_pos = n_neg = 0
    for qid in qids:
        query, rel = candidates.queries[qid], candidates.relevance.get(qid, {})
        judged = [(i, g) for i, g in rel.items() if g > 0]
        if not judged:
            continue
        rng.shuffle(judged)
        positives = [
            (c, grade) for i, grade in judged
            for c in (by_doc.get(i, []) if candidates.unit == "document" else [by_id[i]])
        ][: config.positives]
        negatives = [
            h.chunk for h in bm25.retrieve(query, min(config.depth, len(candidates.chunks)))
            if rel.get(ident(h.chunk), 0) <= 0
        ][: config.negatives]
        hard = {c.id for c in negatives}
        pool = [c for c in candidates.chunks if c.id not in hard and rel.get(ident(c), 0) <= 0]
        negatives += rng.sample(pool, min(config.random_negatives, len(pool)))
        if not negatives:
            continue
        groups.append((query, [(c.text, float(g)) for c, g in positives] + [(c.text, 0.0) for c in negatives]))
        n_pos += len(positives)
        n_neg += len(negatives)
    return groups, n_pos, n_neg


def train_reranker(
    dataset: Dataset,
    output_dir: str | Path,
    *,
    candidates: Candidates | None = None,
    config: TrainConfig | None = None,
) -> TrainingReport:
    """Fine-tune a cross-encoder from the packaged MiniLM weights on `dataset`'s own judgements.

    Positives are the relevant chunks of each training query (from qrels, or chunks overlapping
    span references); negatives are BM25's best non-relevant chunks plus a few random ones. A share of queries is
    held out: the report says whether the model's reranking of their candidates beats the
    candidates' own order. The folder is a regular CrossEncoder: load it with
    `RerankingConfig(kind="trained", model=str(output_dir))`.

    Args:
        dataset: documents, queries and judgements.
        output_dir: where the model is saved (created; existing model files are replaced).
        candidates: the first-stage rankings to train on and rerank (default: the default
            pipeline's hybrid retrieval, `config.depth` deep).
        config: pair counts, epochs, learning rate, held-out share, seed.

    Returns:
        A `TrainingReport` with the held-out evaluation.

    Raises:
        ValueError: fewer than two judged queries, or no training pair.
    """
    config = config or TrainConfig()
    if candidates is None:
        candidates = retrieve_candidates(PipelineConfig(), dataset, depth=config.depth)
    judged = [q for q in candidates.hits if any(g > 0 for g in candidates.relevance.get(q, {}).values())]
    if len(judged) < 2:
        raise ValueError(
            f"{dataset.name!r} has {len(judged)} judged queries among the candidates; training and a "
            "held-out test need at least two (add qrels or span references)"
        )
    rng = random.Random(config.seed)
    rng.shuffle(judged)
    n_held = min(len(judged) - 1, max(1, round(config.heldout * len(judged))))
    heldout, train = sorted(judged[:n_held]), sorted(judged[n_held:])
    groups, n_pos, n_neg = _training_groups(candidates, train, config)
    if not groups:
        raise ValueError(f"no training pairs from {len(train)} queries of {dataset.name!r}; check the judgements")

    import torch
    from sentence_transformers import CrossEncoder

    from .embedding import resolve_model

    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    model = CrossEncoder(resolve_model(config.base_model), num_labels=1, max_length=config.max_length, device="cpu")
    net, tokenizer = model.model, model.tokenizer
    steps = config.epochs * math.ceil(len(groups) / config.queries_per_step)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    net.train()
    for epoch in range(config.epochs):
        random.Random(config.seed + epoch).shuffle(groups)
        for i in range(0, len(groups), config.queries_per_step):
            batch = groups[i : i + config.queries_per_step]
            features = tokenizer(
                [q for q, items in batch for _ in items], [p for _, items in batch for p, _ in items],
                padding=True, truncation=True, max_length=config.max_length, return_tensors="pt",
            )
            logits = net(**features).logits.view(-1)
            # ListNet (top-one) loss per query: softmax over its passages against the grades,
            # so each positive is pushed above the negatives it competes with at rerank time.
            loss, start = logits.new_zeros(()), 0
            for _, items in batch:
                target = torch.tensor([w for _, w in items], dtype=torch.float32)
                part = torch.log_softmax(logits[start : start + len(items)], dim=0)
                loss = loss - (target / target.sum() * part).sum()
                start += len(items)
            (loss / len(batch)).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    net.eval()
    seconds = time.perf_counter() - t0
    output_dir = Path(output_dir)
    _save_atomically(model, output_dir)
    with _MODELS_LOCK:  # a retrained folder must not be served from the process cache
        for key in [key for key in _MODELS if key[0] == str(output_dir.resolve())]:
            del _MODELS[key]
    reranker = CrossEncoderReranker(str(output_dir), max_length=config.max_length)
    depth = min(config.depth, candidates.depth)
    evaluation = evaluate_reranker(
        reranker, candidates, depths=(depth,), k=min(10, depth), name="trained",
        query_ids=heldout,
    )
    return TrainingReport(
        model_dir=str(output_dir), train_queries=tuple(train), heldout_queries=tuple(heldout),
        positives=n_pos, negatives=n_neg, train_seconds=seconds, evaluation=evaluation,
    )


def _save_atomically(model: Any, output_dir: Path) -> None:
    """Save to a sibling folder, then swap it in, so a crash never leaves half a model."""
    import shutil
    import tempfile

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}."))
    try:
        model.save(str(tmp))
        old = None
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
            os.replace(output_dir, old)
        os.replace(tmp, output_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
