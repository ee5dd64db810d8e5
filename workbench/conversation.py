"""A conversation over a pipeline: history sent with each turn, fitted to the token budget.

Each `Conversation.ask` fits the earlier turns to `budget.history_tokens` (truncating the
oldest, or summarising them with the pipeline's own generator, `budget.history_overflow`),
answers through `Pipeline.answer(history=...)`, and prices the turn with and without caching
the history prefix: the prompt puts instructions and history first and marks the last history
turn (`generation.build_prompt`), so turn n reads turns 1..n-2 from the prompt cache and writes
only the newest one. With Claude the figures are the API's own usage (`counted`); with an
offline generator they are offline token estimates priced at the configured model (labelled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .budget import FittedHistory, Turn, fit_history
from .generation.base import build_prompt
from .prices import price_of, usage_cost
from .types import Answer, Chunk, Hit, Usage

if TYPE_CHECKING:
    from .config import PipelineConfig
    from .experiment import Pipeline
    from .results import Response

__all__ = ["Conversation", "ChatTurn", "TurnCost", "SUMMARY_QUESTION", "answered_by"]

SUMMARY_QUESTION = "Summarise the earlier conversation: what the user asked and what was answered."


def answered_by(config: PipelineConfig, response: Response) -> str:
    """Which generator (and model, when there is one) produced the response's text, in words.

    The routed model id names a price, not the generator: an extractive answer was written by
    no model at all, so it must not read "claude-haiku-4-5".
    """
    kind, model = config.generation.kind, response.answer.usage.model or response.model
    if kind == "anthropic":
        return f"answered by Claude `{model}`"
    if kind == "local":
        name = model if model.endswith(".gguf") else "the packaged Gemma 3 270M"
        return f"answered by the local model {name} (llama.cpp, on this machine)"
    if kind == "extractive":
        return (f"answered by the offline extractive generator (sentences picked from the passages, no LLM); "
                f"costs priced as if `{response.model}` had answered")
    return f"answered by the {kind!r} generator"


@dataclass(frozen=True, kw_only=True)
class TurnCost:
    """One turn's tokens and its cost with the history prefix cached and without caching."""

    input_tokens: int  # everything sent: instructions, history, passages, question
    output_tokens: int
    prefix_tokens: int  # instructions + history: the part that can be cached
    cached_prefix_tokens: int  # of those, read from the cache (sent unchanged last turn)
    with_caching_usd: float  # both totals include `summary_usd`
    without_caching_usd: float
    counted: bool  # True: the API's usage; False: offline estimates
    summary_usd: float = 0.0  # the call that summarised older history this turn (if any)

    @property
    def saving_usd(self) -> float:
        """What caching the history prefix saved on this turn (negative: a write not yet repaid)."""
        return self.without_caching_usd - self.with_caching_usd


@dataclass(frozen=True, kw_only=True)
class ChatTurn:
    """A question, its response, the history sent with it, and what the turn cost."""

    question: str
    response: Response
    history: FittedHistory
    cost: TurnCost


class Conversation:
    """A chat with one pipeline; `turns` grows with each `ask`.

    Args:
        pipeline: answers each turn (its `budget` section fits the history).
        count: counts tokens for the budget and offline estimates (default `tokens.estimate_tokens`).
    """

    def __init__(self, pipeline: Pipeline, *, count: Callable[[str], int] | None = None) -> None:
        from .tokens import estimate_tokens

        self.pipeline = pipeline
        self.count = count or estimate_tokens
        self.turns: list[ChatTurn] = []
        self._summaries: list[tuple[Answer, int]] = []  # this turn's summary calls and their input estimate
        self._summary: tuple[int, str] = (0, "")  # how many of the first turns the last summary covers, and it

    @property
    def history(self) -> list[Turn]:
        """Every earlier (question, answer) pair, oldest first (before any fitting)."""
        return [(t.question, t.response.answer.text) for t in self.turns]

    def ask(self, question: str, *, on_text: Callable[[str], None] | None = None) -> ChatTurn:
        """Answer `question` with the fitted history; the turn is appended to `turns`.

        Raises:
            BudgetError: the question alone exceeds `budget.context_tokens`.
        """
        self._summaries.clear()
        fitted = fit_history(self.history, self.pipeline.config.budget, summarise=self._summarise, count=self.count)
        response = self.pipeline.answer(question, on_text=on_text, history=fitted.turns)
        previous = self.turns[-1].history.turns if self.turns else None  # the history cached last turn
        cost = self._cost(question, response, fitted.turns, previous)
        if self._summaries:
            extra = sum(self._summary_cost(a, n) for a, n in self._summaries)
            cost = dataclasses.replace(cost, summary_usd=extra, with_caching_usd=cost.with_caching_usd + extra,
                                       without_caching_usd=cost.without_caching_usd + extra)
        turn = ChatTurn(question=question, response=response, history=fitted, cost=cost)
        self.turns.append(turn)
        return turn

    def _summarise(self, turns: Sequence[Turn]) -> str:
        """The configured generator's summary of `turns` (given to it as numbered passages).

        Incremental: when the turns start with the ones summarised last time, the generator gets
        that summary and only the turns dropped since (the same turns again cost nothing).
        """
        done, summary = self._summary
        if summary and tuple(turns[:done]) == tuple(self.history[:done]) and done <= len(turns):
            if done == len(turns):
                return summary
            texts = [f"Earlier summary: {summary}"] + [f"User: {q}\nAssistant: {a}" for q, a in turns[done:]]
        else:
            texts = [f"User: {q}\nAssistant: {a}" for q, a in turns]
        context = [Hit(chunk=Chunk(id=f"turn:{n}", doc_id="conversation", text=t, start=0, end=len(t)), score=1.0,
                       rank=n) for n, t in enumerate(texts, 1)]
        model = self.pipeline.config.generation.model
        answer = self.pipeline.generator(model).generate(SUMMARY_QUESTION, context)
        self._summaries.append((answer, self.count(SUMMARY_QUESTION) + sum(self.count(t) for t in texts)))
        self._summary = (len(turns), answer.text)
        return answer.text

    def _summary_cost(self, answer: Answer, input_estimate: int) -> float:
        """What a summary call cost: its counted usage, else its estimated tokens at the configured model."""
        if answer.usage.counted:
            return answer.usage.cost_usd
        model = self.pipeline.config.generation.model
        usage = Usage(model=model, input_tokens=input_estimate, output_tokens=self.count(answer.text))
        return usage_cost(usage, price_of(model))

    def _cost(self, question: str, response: Response, sent: Sequence[Turn],
              previous: Sequence[Turn] | None) -> TurnCost:
        gen = self.pipeline.config.generation
        price = price_of(response.model)
        usage = response.answer.usage
        if usage.counted:
            total_in = usage.input_tokens + usage.cache_write_tokens + usage.cache_read_tokens
            plain = Usage(model=usage.model, input_tokens=total_in, output_tokens=usage.output_tokens)
            return TurnCost(input_tokens=total_in, output_tokens=usage.output_tokens,
                            prefix_tokens=usage.cache_write_tokens + usage.cache_read_tokens,
                            cached_prefix_tokens=usage.cache_read_tokens,
                            with_caching_usd=sum(a.usage.cost_usd for a in response.attempts),
                            without_caching_usd=usage_cost(plain, price, cache_ttl=gen.cache_ttl), counted=True)
        context = [h for h in response.hits[: gen.context_chunks] if h.chunk.id not in response.dropped]
        prompt = build_prompt(question, context, history=sent, instructions=gen.system_prompt)
        head = self.count(prompt.system[0]["text"])
        turn_tokens = [self.count(q) + self.count(a) for q, a in sent]
        prefix = head + sum(turn_tokens)  # the instructions and history: up to the last breakpoint
        rest = self.count(prompt.messages[-1]["content"] if sent else prompt.system[1]["text"] + " " + question)
        # last turn's prefix (the instructions, and the history it sent if this turn starts with it) is cached
        same = 0
        if previous is not None:
            while same < min(len(sent), len(previous)) and sent[same] == previous[same]:
                same += 1
            same = same if same == len(previous) else 0
        read = head + sum(turn_tokens[:same]) if previous is not None else 0
        output = self.count(response.answer.text)
        cached = Usage(model=response.model, input_tokens=rest, output_tokens=output,
                       cache_write_tokens=prefix - read, cache_read_tokens=read)
        plain = Usage(model=response.model, input_tokens=prefix + rest, output_tokens=output)
        return TurnCost(input_tokens=prefix + rest, output_tokens=output, prefix_tokens=prefix,
                        cached_prefix_tokens=read, with_caching_usd=usage_cost(cached, price, cache_ttl=gen.cache_ttl),
                        without_caching_usd=usage_cost(plain, price), counted=False)
