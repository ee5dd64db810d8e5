"""Answers from retrieved chunks: Claude through the Anthropic API, a local model, or extraction.

Every generator returns an `Answer` whose text cites context passages as "[n]", the n-th hit
of the context it was given (1-based), with `citations` the cited chunk ids in order of first
citation, and a `Usage` (tokens, latency, time to first token, cost; `counted` says whether
the token numbers are the provider's own). `make_generator` builds the one a
`GenerationConfig` names.

Modules: `base` (the `Generator` protocol, errors, prompts), `claude` (the Anthropic
generator), `offline` (extractive and local llama-cpp generators), `judge` (LLM-as-judge).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..config import GenerationConfig
from ..registry import REGISTRIES, Registry
from ..resources import Resources
from .base import (
    NO_CONTEXT,
    SYSTEM_PROMPT,
    GenerationError,
    Generator,
    MissingAPIKeyError,
    Prompt,
    build_prompt,
    cited_passages,
    completion_prompt,
    parse_citations,
)
from .claude import RETRY_SEPARATOR, AnthropicGenerator, CallRecord, anthropic_client, backoff_delay
from .judge import JUDGE_PROMPT, Judgement, LLMJudge
from .offline import ExtractiveGenerator, LocalGenerator, gemma_path

if TYPE_CHECKING:
    from ..embedding import Embedder

__all__ = [
    "Generator",
    "GENERATORS",
    "make_generator",
    "SYSTEM_PROMPT",
    "NO_CONTEXT",
    "RETRY_SEPARATOR",
    "JUDGE_PROMPT",
    "Prompt",
    "build_prompt",
    "completion_prompt",
    "parse_citations",
    "cited_passages",
    "anthropic_client",
    "MissingAPIKeyError",
    "GenerationError",
    "CallRecord",
    "AnthropicGenerator",
    "ExtractiveGenerator",
    "LocalGenerator",
    "gemma_path",
    "Judgement",
    "LLMJudge",
    "backoff_delay",
]

GENERATORS: Registry = REGISTRIES["generation.kind"]  # name -> generator class (see workbench.registry)


def make_generator(
    config: GenerationConfig, resources: Resources | None = None, *, embedder: Embedder | None = None
) -> Generator:
    """The generator `config.kind` names, `GENERATORS[kind].from_config(config, resources)`.

    Args:
        config: the generation config; `config.model` answers (a router's choice replaces it:
            `dataclasses.replace(config, model=...)`).
        resources: the pipeline's shared resources (price table, embedder).
        embedder: the pipeline's embedder, reused by the extractive generator's scorer;
            replaces `resources.embedder` when given.

    Raises:
        ValueError: an unknown kind (the message lists every known one).
        MissingAPIKeyError: kind "anthropic" without a key.
        ImportError: kind "local" without the `local` extra.
    """
    GENERATORS.check(config.kind, "generator")
    resources = resources or Resources()
    if embedder is not None:
        resources = dataclasses.replace(resources, embedder=embedder)
    return GENERATORS[config.kind].from_config(config, resources)
