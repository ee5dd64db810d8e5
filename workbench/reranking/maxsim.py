"""Late interaction (MaxSim) over the packaged embedding model's token embeddings."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..config import RerankingConfig
from ..types import Hit
from .base import _check_k, _top_k

if TYPE_CHECKING:
    from ..embedding import Embedder, VectorCache
    from ..resources import Resources

__all__ = ["MaxSimReranker"]

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
        from ..embedding import VectorCache
        from ..io import cache_dir

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
        self._prepared: tuple[str, tuple[np.ndarray, np.ndarray]] | None = None

    @classmethod
    def from_config(cls, config: RerankingConfig, resources: Resources) -> MaxSimReranker:
        """Build from `config.maxsim_query_tokens`, `maxsim_idf`, `max_length`, `batch_size`, `input_weight`,
        over the token embeddings of `resources.load_embedder()`."""
        return cls(
            resources.load_embedder(), query_tokens=config.maxsim_query_tokens,
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
        prepared = self._prepared
        kept, q = prepared[1] if prepared is not None and prepared[0] == query else self._encode_query(query)
        content = self._content_tokens(passages)
        weights = np.ones(len(q), dtype=np.float32)
        if self.idf:
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

    def _encode_query(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """The ids and normalised embeddings of the query tokens that count under `query_tokens`."""
        ids = np.asarray(self._tokenize([query])[0])
        keep = self._keep(ids, self.query_tokens)
        return ids[keep], self._forward([query])[0][keep]

    def prepare(self, query: str) -> None:
        """Encode `query` once ahead of several `rerank` calls for it (e.g. at several depths).

        Only the last prepared query is kept; scores are the same as without it.
        """
        self._prepared = (query, self._encode_query(query))

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

