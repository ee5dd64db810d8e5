"""Pointwise LLM reranking: P("yes") from a local GGUF model on llama-cpp-python."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError, RerankingConfig
from ..types import Hit
from .base import _check_k, _top_k

if TYPE_CHECKING:
    from ..resources import Resources

__all__ = ["LLMReranker"]

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
            from ..generation import gemma_path  # assembles the packaged GGUF once

            path = gemma_path()
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"reranking.model {path!r} is not a file; give the path of a .gguf model")
        self.model_path = str(Path(path).expanduser())
        self.max_length = max_length
        self.input_weight = input_weight
        self._llm: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: RerankingConfig, resources: Resources) -> LLMReranker:
        """Build from `config.model` (a .gguf path; empty: the packaged Gemma), `max_length`, `input_weight`."""
        return cls(config.model, max_length=config.max_length, input_weight=config.input_weight)

    def prepare(self, query: str) -> None:
        """No query-only work: the model reads the query with each passage."""

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

