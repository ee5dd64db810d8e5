"""Per-request token budgets, enforced when the prompt is assembled.

`fit_context` keeps the best-ranked passages that fit `budget.context_tokens` together with
the question (the lowest-ranked go first) and reports what it dropped; a question that alone
exceeds the budget is an error, never an empty prompt. `fit_history` keeps the most recent
conversation turns that fit `budget.history_tokens`; older turns are truncated away or, with
`history_overflow = "summarise"`, replaced by one summary turn (cut to fit when the summary
itself is too long, so a history that is over budget on its own still fits). Tokens are
counted by `count` (default: the offline Claude estimate, `tokens.estimate_tokens`; give the
API's counter for exact figures).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import BudgetConfig
from .generation.base import PASSAGES_HEADER, passage_block, passages_text
from .types import Hit

__all__ = ["BudgetError", "FittedContext", "FittedHistory", "fit_context", "fit_history", "SUMMARY_PREFIX", "Turn"]

Turn = tuple[str, str]  # (user, assistant)
SUMMARY_PREFIX = "Summary of the earlier conversation: "
SUMMARY_SHARE = 4  # a summary may take 1/SUMMARY_SHARE of the history budget


class BudgetError(ValueError):
    """The request cannot fit its token budget (e.g. the question alone is larger)."""


def _default_count() -> Callable[[str], int]:
    from .tokens import estimate_tokens

    return estimate_tokens


@dataclass(frozen=True, kw_only=True)
class FittedContext:
    """The passages that fit, the chunk ids dropped (lowest-ranked first), and the tokens used."""

    context: tuple[Hit, ...]
    dropped: tuple[str, ...]
    question_tokens: int
    context_tokens: int
    budget: int  # 0 = no limit


@dataclass(frozen=True, kw_only=True)
class FittedHistory:
    """The turns sent (a summary turn first, when one was made), what was dropped, and the tokens used."""

    turns: tuple[Turn, ...]
    dropped_turns: int
    summary: str | None
    tokens: int
    budget: int  # 0 = no limit


def fit_context(
    query: str, context: Sequence[Hit], budget: BudgetConfig, *, count: Callable[[str], int] | None = None
) -> FittedContext:
    """The best-ranked passages of `context` that fit `budget.context_tokens` with the question.

    Passages are counted as the prompt renders them (the header and numbered `<passage>` blocks,
    re-counted as one text so the budget holds for what is sent). A passage
    that does not fit is dropped with every passage ranked below it, so the numbering the
    model sees stays the ranking's.

    Raises:
        BudgetError: the question alone needs more than `budget.context_tokens`.
    """
    count = count or _default_count()
    q = count(query)
    limit = budget.context_tokens
    if limit and q > limit:
        raise BudgetError(
            f"the question needs {q} tokens, more than budget.context_tokens={limit}; raise the budget "
            "(it covers the question and its passages) or shorten the question"
        )
    kept: list[Hit] = []
    used = count(PASSAGES_HEADER)
    for n, hit in enumerate(context, 1):
        size = count(passage_block(n, hit.chunk.text))
        if limit and q + used + size > limit:
            break
        kept.append(hit)
        used += size
    used = count(passages_text(kept))  # the block as sent: separators and merges can add a few tokens
    while limit and kept and q + used > limit:
        kept.pop()
        used = count(passages_text(kept))
    if limit and q + used > limit:
        raise BudgetError(
            f"the question ({q} tokens) and the passages header ({used} tokens) need more than "
            f"budget.context_tokens={limit}; raise the budget"
        )
    dropped = tuple(h.chunk.id for h in reversed(context[len(kept):]))
    return FittedContext(context=tuple(kept), dropped=dropped, question_tokens=q, context_tokens=used, budget=limit)


def _turn_tokens(turn: Turn, count: Callable[[str], int]) -> int:
    return count(turn[0]) + count(turn[1])


def _cut(text: str, limit: int, count: Callable[[str], int]) -> str:
    """The longest word prefix of `text` within `limit` tokens (binary search over words)."""
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def fit_history(
    history: Sequence[Turn],
    budget: BudgetConfig,
    *,
    summarise: Callable[[Sequence[Turn]], str] | None = None,
    count: Callable[[str], int] | None = None,
) -> FittedHistory:
    """The most recent turns of `history` that fit `budget.history_tokens`.

    With `budget.history_overflow == "summarise"` and a `summarise` callable, the older turns
    become one (user, assistant) summary turn: the recent turns then fill three quarters of the
    budget and the summary, cut to fit, the rest.

    Raises:
        ValueError: "summarise" asked for without a `summarise` callable.
    """
    count = count or _default_count()
    limit = budget.history_tokens
    turns = tuple(history)
    if not limit:
        return FittedHistory(turns=turns, dropped_turns=0, summary=None,
                             tokens=sum(_turn_tokens(t, count) for t in turns), budget=0)
    summarising = budget.history_overflow == "summarise"
    if summarising and summarise is None:
        raise ValueError("budget.history_overflow='summarise' needs a summarise callable (the generator)")
    sizes = [_turn_tokens(t, count) for t in turns]
    # when turns must go and a summary replaces them, the summary gets a quarter of the budget
    room_for_turns = limit if sum(sizes) <= limit or not summarising else limit - limit // SUMMARY_SHARE
    kept: list[Turn] = []
    used = 0
    for turn, size in zip(reversed(turns), reversed(sizes), strict=True):
        if used + size > room_for_turns:
            break
        kept.insert(0, turn)
        used += size
    older = turns[: len(turns) - len(kept)]
    summary = None
    if older and summarising:
        label = "(summary)"
        room = limit - used - count(label) - count(SUMMARY_PREFIX)
        text = _cut(summarise(older), room, count) if room > 0 else ""  # type: ignore[misc]
        while text and used + count(label) + count(SUMMARY_PREFIX + text) > limit:  # joined text counts differently
            text = _cut(text, count(text) - 1, count)
        if text:
            summary = SUMMARY_PREFIX + text
            kept.insert(0, (label, summary))
            used += count(label) + count(summary)
    return FittedHistory(turns=tuple(kept), dropped_turns=len(older), summary=summary, tokens=used, budget=limit)
