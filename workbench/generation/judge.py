"""LLM-as-judge: faithfulness and relevance of an answer, graded by Claude."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..config import GenerationConfig
from ..metrics import parse_judgement
from ..types import Hit, Usage
from .base import build_prompt
from .claude import AnthropicGenerator

__all__ = ["JUDGE_PROMPT", "Judgement", "LLMJudge"]

log = logging.getLogger(__name__)

JUDGE_PROMPT = (
    "You grade answers produced by a retrieval-augmented system. Given the context passages, "
    "the question and the answer, rate two things from 1 (worst) to 5 (best): faithfulness, "
    "whether every claim in the answer is supported by the passages; relevance, whether the "
    "answer addresses the question. Reply with only a JSON object such as "
    '{"faithfulness": 4, "relevance": 5}.'
)


@dataclass(frozen=True, kw_only=True)
class Judgement:
    """An LLM judge's scores in [0, 1] (NaN when its reply could not be read) and its own usage."""

    faithfulness: float
    relevance: float
    usage: Usage
    raw: str


class LLMJudge:
    """Faithfulness and relevance graded by Claude; the judge's own tokens and cost are in `usage`."""

    def __init__(self, config: GenerationConfig | None = None, *, model: str | None = None,
                 **kwargs: Any) -> None:
        config = replace(config or GenerationConfig(kind="anthropic"), max_tokens=64, temperature=0.0,
                         system_prompt=JUDGE_PROMPT)
        self._client = AnthropicGenerator(config, model=model, **kwargs)

    def judge(self, query: str, answer: str, context: Sequence[Hit]) -> Judgement:
        """Grade `answer` to `query` against `context`.

        Raises:
            GenerationError: the judge could not be reached (see `AnthropicGenerator`).
        """
        question = f"Question: {query}\n\nAnswer to grade:\n{answer}"
        prompt = build_prompt(question, context, instructions=JUDGE_PROMPT,
                              caching=self._client.config.prompt_caching, cache_ttl=self._client.config.cache_ttl)
        text, usage = self._client.complete(prompt)
        try:
            faithfulness, relevance = parse_judgement(text)
        except ValueError:
            log.warning("judge reply unreadable: %r", text[:200])
            faithfulness = relevance = math.nan
        return Judgement(faithfulness=faithfulness, relevance=relevance, usage=usage, raw=text)
