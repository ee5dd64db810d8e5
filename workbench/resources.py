"""What pipeline stages share, handed to every `Kind.from_config(config, resources)`.

A stage reads its own config section and takes everything else it needs from `Resources`:
the embedder, the price table, the answering model, the chunks an index covers, the stages
built before it (the retriever a retrieval-aware router inspects), callables a test or a
study injects. Every field is optional; the `load_*` methods fall back to the process-wide
defaults (memoised where they live), so building `Resources()` costs nothing. (The run store
is not here: no stage reads or writes it; `workbench.runs` does, above the stages.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import DEFAULT_ANSWER_MODEL, EmbeddingConfig, PipelineConfig

if TYPE_CHECKING:
    import numpy as np

    from .embedding import Embedder
    from .prices import ModelPrice
    from .retrieval import Retriever
    from .types import Answer, Chunk

__all__ = ["Resources"]


@dataclass(frozen=True, kw_only=True)
class Resources:
    """Shared inputs of the stage builders; frozen, so one instance serves a whole pipeline."""

    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)  # what `load_embedder` loads
    embedder: Embedder | None = None  # the pipeline's embedder; None: retrievers refuse, others load one
    embed: Callable[[Sequence[str]], np.ndarray] | None = None  # texts -> vectors, for the semantic chunker
    count_tokens: Callable[[str], int] | None = None  # a custom token counter (chunk sizes, rules router)
    model: str = DEFAULT_ANSWER_MODEL  # the answering model (`generation.model`), the fixed router's pick
    prices: Mapping[str, ModelPrice] | None = None  # the price table; None: each stage loads the default
    chunks: Sequence[Chunk] = ()  # what a retriever indexes (the chunking stage's output)
    retriever: Retriever | None = None  # the first stage, for the retrieval-aware router
    answer: Callable[[str, str], Answer] | None = None  # (query, model) -> Answer, for the cascade
    judge: Callable[[str, Answer], float] | None = None  # (query, answer) -> confidence, for the cascade

    @classmethod
    def for_config(cls, config: PipelineConfig, **given: object) -> Resources:
        """Resources for `config`'s pipeline: its embedding settings and answering model, plus `given`."""
        return cls(embedding=config.embedding, model=config.generation.model, **given)  # type: ignore[arg-type]

    def load_embedder(self) -> Embedder:
        """`embedder`, else the process-wide embedder of `embedding` (loaded once per process)."""
        if self.embedder is not None:
            return self.embedder
        from .embedding import load_embedder

        return load_embedder(self.embedding)

    def load_embed(self) -> Callable[[Sequence[str]], np.ndarray]:
        """`embed`, else the embedder's `embed`."""
        return self.embed if self.embed is not None else self.load_embedder().embed

    def load_count_tokens(self) -> Callable[[str], int]:
        """`count_tokens`, else the offline Claude token estimate."""
        if self.count_tokens is not None:
            return self.count_tokens
        from .tokens import estimate_tokens

        return estimate_tokens
