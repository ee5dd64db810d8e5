"""The plain values that flow between pipeline stages: frozen dataclasses, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Document", "Chunk", "Hit", "Span", "Usage", "Prompt", "Answer"]


@dataclass(frozen=True, kw_only=True)
class Document:
    """A source document: an id, its full text and free-form metadata (title, source, dates...)."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """A piece of a document; `document.text[start:end] == text` always holds."""

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Hit:
    """A retrieved chunk with its score and 1-based rank in one result list."""

    chunk: Chunk
    score: float
    rank: int


@dataclass(frozen=True, kw_only=True)
class Span:
    """A reference excerpt: characters `start:end` of document `doc_id`."""

    doc_id: str
    start: int
    end: int


@dataclass(frozen=True, kw_only=True)
class Usage:
    """What one generation call consumed and cost.

    `counted` is True when token numbers come from the provider's own accounting (the API's
    `usage`), False when they are offline estimates.
    """

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    latency_s: float = 0.0
    time_to_first_token_s: float | None = None
    output_tokens_per_s: float | None = None
    cost_usd: float = 0.0
    counted: bool = False


@dataclass(frozen=True, kw_only=True)
class Prompt:
    """A Messages API prompt: system blocks (cached instructions, then passages) and messages.

    A plain completion prompt is one user message and no system blocks.
    """

    system: tuple[Mapping[str, Any], ...]
    messages: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A generated answer with the ids of the chunks it cites and what it cost.

    `prompt` is what the generator sent (what a trace records); None when nothing was sent
    (e.g. an answer served from the response cache).
    """

    text: str
    citations: tuple[str, ...]
    usage: Usage
    prompt: Prompt | None = field(default=None, compare=False, repr=False)
