"""LLM-as-judge: faithfulness and relevance of an answer, graded by Claude."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..config import GenerationConfig
from ..metrics import parse_judgement
from ..types import Hit, Usage
from .base import build_prompt
from .claude import AnthropicGenerator

if TYPE_CHECKING:
    from ..batches import BatchRun, Ledger, PollPolicy
    from ..types import Prompt

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
        text, usage = self._client.complete(self._prompt(query, answer, context))
        return _judgement(text, usage)

    def _prompt(self, query: str, answer: str, context: Sequence[Hit]) -> Prompt:
        question = f"Question: {query}\n\nAnswer to grade:\n{answer}"
        return build_prompt(question, context, instructions=JUDGE_PROMPT,
                            caching=self._client.config.prompt_caching, cache_ttl=self._client.config.cache_ttl)

    def judge_batch(
        self, items: Mapping[str, tuple[str, str, Sequence[Hit]]], *, ledger: Ledger | None = None,
        key: str | None = None, poll: PollPolicy | None = None,
    ) -> tuple[dict[str, Judgement], BatchRun]:
        """Grade many (query, answer, context) items in one Message Batch (the batch price).

        Returns:
            The judgements of the items that succeeded (by the items' keys), and the batch run.
        """
        from ..batches import BatchRequest, PollPolicy, run_batch
        from .claude import anthropic_client

        config = self._client.config
        ids = {f"j{n}": item_id for n, item_id in enumerate(items)}
        requests = [BatchRequest(custom_id=cid, model=self._client.models[0], max_tokens=config.max_tokens,
                                 prompt=self._prompt(*items[item_id])) for cid, item_id in ids.items()]
        client = anthropic_client(base_url=config.base_url or None, timeout=config.timeout_s)
        run = run_batch(client, requests, key=key, ledger=ledger, poll=poll or PollPolicy(), cache_ttl=config.cache_ttl)
        return {ids[cid]: _judgement(r.text, r.usage) for cid, r in run.results.items()
                if r.status == "succeeded" and r.usage is not None}, run


def _judgement(text: str, usage: Usage) -> Judgement:
    try:
        faithfulness, relevance = parse_judgement(text)
    except ValueError:
        log.warning("judge reply unreadable: %r", text[:200])
        faithfulness = relevance = math.nan
    return Judgement(faithfulness=faithfulness, relevance=relevance, usage=usage, raw=text)
