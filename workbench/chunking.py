"""Chunkers: split a document into chunks that keep exact character offsets and heading metadata.

Every chunker tokenizes a document once into a `TokenIndex` (token character offsets), then
counts the tokens of any span by bisection, so sweeps that re-chunk often stay fast. Chunk
spans always satisfy `doc.text[c.start:c.end] == c.text`; together they cover every
non-whitespace character of the document.
"""

from __future__ import annotations

import functools
import itertools
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .config import DEFAULT_EMBEDDING_MODEL, ChunkingConfig, EmbeddingConfig, choices, shorten
from .registry import REGISTRIES, Registry
from .resources import Resources
from .tokens import claude_tokenizer
from .types import Chunk, Document

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "Chunker",
    "TokenIndex",
    "Tokenize",
    "Embed",
    "CHUNKERS",
    "make_chunker",
    "make_tokenize",
    "WholeDocumentChunker",
    "FixedTokenChunker",
    "RecursiveChunker",
    "SemanticChunker",
]

Embed = Callable[[Sequence[str]], np.ndarray]


class Chunker(Protocol):
    """Splits one document into chunks."""

    def chunk(self, doc: Document) -> list[Chunk]: ...


@dataclass(frozen=True)
class TokenIndex:
    """The tokens of one text as character offsets, so that any span is counted by bisection.

    `cum[i]` is the total weight of the tokens before token i (weight 1 per token for real
    tokenizers). `ends` is a running maximum, so it stays sorted when tokens overlap.
    """

    starts: list[int]
    ends: list[int]
    cum: list[int]

    @classmethod
    def from_offsets(cls, offsets: Iterable[tuple[int, int]], weights: Iterable[int] | None = None) -> TokenIndex:
        """Build an index from (start, end) token offsets in text order; empty tokens are dropped."""
        if weights is None:
            kept = [(s, e) for s, e in offsets if e > s]
            cum = list(range(len(kept) + 1))
        else:
            pairs = [(s, e, w) for (s, e), w in zip(offsets, weights) if e > s]
            kept = [(s, e) for s, e, _ in pairs]
            cum = [0, *itertools.accumulate(w for _, _, w in pairs)]
        starts = [s for s, _ in kept]
        ends = list(itertools.accumulate((e for _, e in kept), max))
        return cls(starts, ends, cum)

    def __len__(self) -> int:
        return len(self.starts)

    def count(self, start: int, end: int) -> int:
        """Tokens that overlap characters `start:end` (a token cut by a boundary counts on both sides)."""
        hi = bisect_left(self.starts, end)
        lo = bisect_right(self.ends, start)
        return self.cum[hi] - self.cum[lo] if hi > lo else 0


Tokenize = Callable[[str], TokenIndex]


def _whitespace_tokenize(text: str) -> TokenIndex:
    return TokenIndex.from_offsets(m.span() for m in re.finditer(r"\S+", text))


@functools.cache
def _offsets_tokenize(tokenizer: tokenizers.Tokenizer) -> Tokenize:
    # One per tokenizer, memoised per text: a sweep re-chunks the same documents at every size.
    @functools.lru_cache(maxsize=16_384)
    def tokenize(text: str) -> TokenIndex:
        return TokenIndex.from_offsets(tokenizer.encode(text, add_special_tokens=False).offsets)

    return tokenize


def _counting_tokenize(count_tokens: Callable[[str], int]) -> Tokenize:
    # A bare counter gives no offsets: count each whitespace-separated word once and add the
    # counts up (exact for word counters, close for subword tokenizers), still one pass per text.
    def tokenize(text: str) -> TokenIndex:
        words = [m.span() for m in re.finditer(r"\S+", text)]
        return TokenIndex.from_offsets(words, (count_tokens(text[s:e]) for s, e in words))

    return tokenize


@functools.cache
def _embedding_tokenizer(embedding_model: str) -> tokenizers.Tokenizer:
    import tokenizers
    from transformers import AutoTokenizer

    from .embedding import resolve_model

    hf = AutoTokenizer.from_pretrained(resolve_model(embedding_model))
    if not hf.is_fast:
        raise ValueError(
            f"embedding model {embedding_model!r} has no fast tokenizer, so chunk offsets cannot be "
            'computed; set chunking.tokenizer = "whitespace" or "claude"'
        )
    # A private copy without the model's truncation and padding (128 tokens for MiniLM).
    backend = tokenizers.Tokenizer.from_str(hf.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def make_tokenize(
    name: str,
    *,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    count_tokens: Callable[[str], int] | None = None,
) -> Tokenize:
    """The tokenizer a chunker counts with.

    Args:
        name: "embedding" (the embedding model's own fast tokenizer), "whitespace" or "claude"
            (the legacy Claude tokenizer in data/claude_tokenizer); ignored if `count_tokens` is given.
        embedding_model: the model whose tokenizer "embedding" loads (memoised per process).
        count_tokens: a custom counter, applied once per whitespace-separated word and summed.

    Returns:
        A function from a text to its `TokenIndex`.

    Raises:
        ValueError: an unknown tokenizer name (the message lists the known ones).
    """
    if count_tokens is not None:
        return _counting_tokenize(count_tokens)
    if name == "whitespace":
        return _whitespace_tokenize
    if name == "embedding":
        return _offsets_tokenize(_embedding_tokenizer(embedding_model))
    if name == "claude":
        return _offsets_tokenize(claude_tokenizer())
    raise ValueError(f"unknown chunking tokenizer {shorten(name)}; choose one of {list(choices('chunking.tokenizer'))}")


# --- headings and chunk assembly -------------------------------------------------------------

_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
_FENCE = re.compile(r"^ {0,3}(?:```|~~~)", re.M)


@dataclass(frozen=True)
class _Headings:
    """The markdown `#` heading path in force at each heading's position."""

    positions: list[int]
    paths: list[tuple[str, ...]]

    @classmethod
    def parse(cls, text: str) -> _Headings:
        fences = [m.start() for m in _FENCE.finditer(text)]
        positions: list[int] = []
        paths: list[tuple[str, ...]] = []
        stack: list[tuple[int, str]] = []
        for m in _MD_HEADING.finditer(text):
            if bisect_right(fences, m.start()) % 2:  # inside a fenced code block
                continue
            level = len(m.group(1))
            stack = [h for h in stack if h[0] < level] + [(level, m.group(2).strip())]
            positions.append(m.start())
            paths.append(tuple(title for _, title in stack))
        return cls(positions, paths)

    def at(self, pos: int) -> list[str]:
        i = bisect_right(self.positions, pos) - 1
        return list(self.paths[i]) if i >= 0 else []


def _check(doc: Document) -> None:
    if not doc.text.strip():
        raise ValueError(
            f"document {doc.id!r} is empty or whitespace-only; remove it from the corpus before chunking"
        )


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _make_chunks(doc: Document, spans: Iterable[tuple[int, int]]) -> list[Chunk]:
    text = doc.text
    headings = _Headings.parse(text)
    chunks: list[Chunk] = []
    seen: set[tuple[int, int]] = set()
    for span in spans:
        start, end = _strip(text, *span)
        if start == end or (start, end) in seen:
            continue
        seen.add((start, end))
        metadata = {**doc.metadata, "headings": headings.at(start), "chunk_index": len(chunks)}
        chunks.append(
            Chunk(id=f"{doc.id}:{start}-{end}", doc_id=doc.id, text=text[start:end],
                  start=start, end=end, metadata=metadata)
        )
    return chunks


# --- the chunkers ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WholeDocumentChunker:
    """Each document is one chunk (whitespace trimmed): the unit of BEIR-style evaluation."""

    def chunk(self, doc: Document) -> list[Chunk]:
        """The whole document as a single chunk.

        Raises:
            ValueError: the document is empty or whitespace-only.
        """
        _check(doc)
        return _make_chunks(doc, [(0, len(doc.text))])

    @classmethod
    def from_config(cls, config: ChunkingConfig, resources: Resources) -> WholeDocumentChunker:
        """A whole-document chunker (size, overlap and tokenizer do not apply)."""
        return cls()


def _fixed_spans(index: TokenIndex, start: int, end: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Windows of at most `size` tokens over `start:end`, cut at token starts, `overlap` shared."""
    starts, cum = index.starts, index.cum
    i, n = bisect_left(starts, start), bisect_left(starts, end)
    if i == n:
        return [(start, end)]
    spans = []
    begin = start
    while True:
        j = max(i + 1, bisect_right(cum, cum[i] + size, i + 1, n + 1) - 1)
        while i + 1 < j < n and starts[j] == starts[j - 1]:  # never split tokens of one character
            j -= 1
        spans.append((begin, end if j >= n else starts[j]))
        if j >= n:
            return spans
        i = bisect_left(cum, cum[j] - overlap, i + 1, j + 1)
        begin = starts[i]


@dataclass(frozen=True, kw_only=True)
class FixedTokenChunker:
    """Windows of `size` tokens, each sharing `overlap` tokens with the previous one."""

    size: int
    overlap: int = 0
    tokenize: Tokenize

    def chunk(self, doc: Document) -> list[Chunk]:
        """Cut the document at token boundaries into windows of `size` tokens.

        Raises:
            ValueError: the document is empty or whitespace-only.
        """
        _check(doc)
        index = self.tokenize(doc.text)
        return _make_chunks(doc, _fixed_spans(index, 0, len(doc.text), self.size, self.overlap))

    @classmethod
    def from_config(cls, config: ChunkingConfig, resources: Resources) -> FixedTokenChunker:
        """A fixed-window chunker from `config.size` and `config.overlap`."""
        return cls(size=config.size, overlap=config.overlap, tokenize=config_tokenize(config, resources))


# Split points, coarsest first. Each pattern marks the position where a new piece begins.
_HEADING = re.compile(r"^[ \t]*(?:#{1,6}[ \t]|<h[1-6][\s>]|=(?: =)* [^=\n]+ =(?: =)*[ \t]*$)", re.M | re.I)
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"(?:[.!?]['\"\u2019\u201d)\]]*(?=\s)|[\u3002\uff01\uff1f])\s*")
_WORD = re.compile(r"\s+")
# (pattern, whether the piece begins at the match's end rather than its start)
_SEPARATORS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (_HEADING, False),
    (_PARAGRAPH, False),
    (_LINE, False),
    (_SENTENCE, True),
    (_WORD, False),
)


def _cuts(text: str, start: int, end: int, separators: Sequence[tuple[re.Pattern[str], bool]]) -> list[int]:
    found = {m.end() if at_end else m.start()
             for pattern, at_end in separators for m in pattern.finditer(text, start, end)}
    return sorted(p for p in found if start < p < end)


@dataclass(frozen=True, kw_only=True)
class RecursiveChunker:
    """Split at headings, then blank lines, lines, sentences, words and tokens; merge up to `size`."""

    size: int
    overlap: int = 0
    tokenize: Tokenize

    def chunk(self, doc: Document) -> list[Chunk]:
        """Split the document at the coarsest separators that bring pieces under `size` tokens.

        Raises:
            ValueError: the document is empty or whitespace-only.
        """
        _check(doc)
        index = self.tokenize(doc.text)
        return _make_chunks(doc, self.spans(doc.text, index, 0, len(doc.text)))

    def spans(self, text: str, index: TokenIndex, start: int, end: int, level: int = 0) -> list[tuple[int, int]]:
        """Character spans of at most `size` tokens (bar single oversized tokens) covering `start:end`."""
        if index.count(start, end) <= self.size:
            return [(start, end)]
        if level == len(_SEPARATORS):
            return _fixed_spans(index, start, end, self.size, 0)
        cuts = _cuts(text, start, end, _SEPARATORS[level : level + 1])
        if not cuts:
            return self.spans(text, index, start, end, level + 1)
        bounds = [start, *cuts, end]
        out: list[tuple[int, int]] = []
        group: list[tuple[int, int]] = []  # consecutive pieces of the chunk being built
        for piece in zip(bounds, bounds[1:]):
            if index.count(*piece) > self.size:
                if group:
                    out.append((group[0][0], group[-1][1]))
                    group = []
                out.extend(self.spans(text, index, *piece, level + 1))
                continue
            if group and index.count(group[0][0], piece[1]) > self.size:
                out.append((group[0][0], group[-1][1]))
                # Carry over the trailing pieces worth at most `overlap` tokens that still fit.
                keep = len(group)
                while (keep > 0 and index.count(group[keep - 1][0], group[-1][1]) <= self.overlap
                       and index.count(group[keep - 1][0], piece[1]) <= self.size):
                    keep -= 1
                group = group[keep:]
            group.append(piece)
        if group:
            out.append((group[0][0], group[-1][1]))
        return out

    @classmethod
    def from_config(cls, config: ChunkingConfig, resources: Resources) -> RecursiveChunker:
        """A recursive chunker from `config.size` and `config.overlap`."""
        return cls(size=config.size, overlap=config.overlap, tokenize=config_tokenize(config, resources))


@dataclass(frozen=True, kw_only=True)
class SemanticChunker:
    """Split between sentences where adjacent embeddings are far apart, then cap at `size` tokens.

    A gap between two sentences is a breakpoint when its cosine distance exceeds the
    `breakpoint_percentile` percentile of all gaps in the document. With `window` > 1 the
    distance compares the mean of the `window` sentences before the gap with the `window`
    after it, which smooths out single odd sentences.
    """

    size: int
    overlap: int = 0
    breakpoint_percentile: float = 95.0
    window: int = 1
    tokenize: Tokenize
    embed: Embed

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window={self.window} must be at least 1 sentence")

    def chunk(self, doc: Document) -> list[Chunk]:
        """Group sentences at semantic breakpoints; groups over `size` tokens split recursively.

        Raises:
            ValueError: the document is empty or whitespace-only.
        """
        _check(doc)
        text = doc.text
        index = self.tokenize(text)
        cuts = _cuts(text, 0, len(text), _SEPARATORS[:-1])
        bounds = [0, *cuts, len(text)]
        sentences = [(s, e) for s, e in (_strip(text, *p) for p in zip(bounds, bounds[1:])) if s < e]
        breaks = [sentences[i + 1][0] for i in self._breakpoints([text[s:e] for s, e in sentences])]
        edges = [0, *breaks, len(text)]
        recursive = RecursiveChunker(size=self.size, overlap=self.overlap, tokenize=self.tokenize)
        spans = [span for group in zip(edges, edges[1:]) for span in recursive.spans(text, index, *group)]
        return _make_chunks(doc, spans)

    def _breakpoints(self, sentences: list[str]) -> list[int]:
        """Indices i such that the gap after sentence i is a breakpoint."""
        if len(sentences) < 2:
            return []
        vectors = np.asarray(self.embed(sentences), dtype=np.float64)
        if vectors.shape[0] != len(sentences):
            raise ValueError(f"embed returned {vectors.shape[0]} vectors for {len(sentences)} sentences")
        sums = np.vstack([np.zeros(vectors.shape[1]), np.cumsum(vectors, axis=0)])
        gaps = np.arange(1, len(sentences))  # gap g lies between sentence g - 1 and sentence g
        before = sums[gaps] - sums[np.maximum(gaps - self.window, 0)]
        after = sums[np.minimum(gaps + self.window, len(sentences))] - sums[gaps]
        norms = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
        distance = 1.0 - np.einsum("ij,ij->i", before, after) / np.maximum(norms, 1e-12)
        threshold = np.percentile(distance, self.breakpoint_percentile)
        return [int(g) - 1 for g in gaps[distance > threshold]]

    @classmethod
    def from_config(cls, config: ChunkingConfig, resources: Resources) -> SemanticChunker:
        """A semantic chunker from `config` (size, overlap, breakpoint_percentile) and `resources.load_embed()`."""
        return cls(size=config.size, overlap=config.overlap, breakpoint_percentile=config.breakpoint_percentile,
                   tokenize=config_tokenize(config, resources), embed=resources.load_embed())


CHUNKERS: Registry = REGISTRIES["chunking.method"]  # name -> chunker class (see workbench.registry)


def config_tokenize(config: ChunkingConfig, resources: Resources) -> Tokenize:
    """The tokenizer `config.tokenizer` names (of `resources.embedding.model` for "embedding"),
    or `resources.count_tokens` applied per word when one is given."""
    return make_tokenize(config.tokenizer, embedding_model=resources.embedding.model,
                         count_tokens=resources.count_tokens)


def make_chunker(
    config: ChunkingConfig,
    resources: Resources | None = None,
    *,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    count_tokens: Callable[[str], int] | None = None,
    embed: Embed | None = None,
) -> Chunker:
    """Build the chunker `config.method` names: `CHUNKERS[method].from_config(config, resources)`.

    Args:
        config: method, size and overlap (in tokens), tokenizer and semantic breakpoint.
        resources: what the chunker may use; when None, built from the keyword arguments:
        embedding_model: the model whose tokenizer counts tokens when `config.tokenizer` is
            "embedding", and whose embeddings the semantic chunker compares.
        count_tokens: a custom token counter (applied per word and summed), overriding `config.tokenizer`.
        embed: texts -> vectors for the semantic chunker; defaults to the cached embedder of
            `embedding_model`.

    Returns:
        A `Chunker`.

    Raises:
        ConfigError: an unknown method (the message lists every known one).
    """
    CHUNKERS.check(config.method, "chunker")
    if resources is None:
        resources = Resources(embedding=EmbeddingConfig(model=embedding_model), count_tokens=count_tokens, embed=embed)
    return CHUNKERS[config.method].from_config(config, resources)
