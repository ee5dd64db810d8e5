"""The generator contract, its errors, and the prompts every generator builds on."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ..types import Answer, Hit, Prompt  # Prompt lives with Answer, which carries it

__all__ = [
    "Generator",
    "MissingAPIKeyError",
    "GenerationError",
    "SYSTEM_PROMPT",
    "NO_CONTEXT",
    "Prompt",
    "build_prompt",
    "completion_prompt",
    "parse_citations",
    "cited_passages",
    "passage_block",
    "passages_text",
    "PASSAGES_HEADER",
]

SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages you are given. "
    "After each sentence, cite the passages that support it by their numbers in square brackets, "
    "like [1] or [2][3]. If the passages do not contain the answer, say that you do not know "
    "instead of guessing. Answer concisely, in plain prose."
)
NO_CONTEXT = "No passages were retrieved for this question, so I cannot answer it."
_CITATION_GROUP = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")


class Generator(Protocol):
    """Answers a query from retrieved context; `on_text` receives streamed pieces of the text."""

    def generate(
        self, query: str, context: Sequence[Hit], *, on_text: Callable[[str], None] | None = None
    ) -> Answer: ...


class MissingAPIKeyError(RuntimeError):
    """No Anthropic API key is configured."""


class GenerationError(RuntimeError):
    """Every attempt on every model failed, or the request itself is invalid."""


# --- prompts ------------------------------------------------------------------------------------


PASSAGES_HEADER = "Context passages:\n\n"


def passage_block(n: int, text: str) -> str:
    """Passage `n` as the prompt shows it (token budgets count this)."""
    return f'<passage n="{n}">\n{text}\n</passage>'


def passages_text(context: Sequence[Hit]) -> str:
    """The passages block of the prompt, header included (what token budgets count)."""
    body = "\n\n".join(passage_block(i, hit.chunk.text) for i, hit in enumerate(context, 1))
    return PASSAGES_HEADER + (body or "(no passages were retrieved)")


def build_prompt(
    query: str,
    context: Sequence[Hit],
    *,
    history: Sequence[tuple[str, str]] = (),
    instructions: str = "",
    caching: bool = True,
    cache_ttl: str = "5m",
) -> Prompt:
    """Assemble the prompt: instructions, passages, then the question; in a conversation,
    instructions, history turns, then passages and the question.

    The instructions are the static prefix; with `caching` their block carries
    `cache_control` (ephemeral, `cache_ttl` "5m" or "1h") so repeated calls read it from the
    prompt cache. Passages change with every query, so they follow the breakpoint. History
    only grows, so in a conversation it comes right after the instructions, its last turn
    carries a second breakpoint (turn 20 reads turns 1-19 from the cache instead of paying
    for them again), and the passages move into the last user message.

    Args:
        query: the question.
        context: the hits to answer from, numbered 1.. in order.
        history: earlier (user, assistant) turns, oldest first.
        instructions: the system instructions; "" uses `SYSTEM_PROMPT`.
        caching: mark the instructions for prompt caching.
        cache_ttl: the cache lifetime, "5m" or "1h".

    Raises:
        ValueError: an unknown `cache_ttl` or an empty query.
    """
    if not query.strip():
        raise ValueError("the query is empty; ask a question")
    if cache_ttl not in ("5m", "1h"):
        raise ValueError(f"unknown cache_ttl {cache_ttl!r}; choose one of ['1h', '5m']")
    head: dict[str, Any] = {"type": "text", "text": instructions or SYSTEM_PROMPT}
    if caching:
        head["cache_control"] = {"type": "ephemeral", "ttl": cache_ttl}
    passages = passages_text(context)
    if not history:
        return Prompt(system=(head, {"type": "text", "text": passages}), messages=({"role": "user", "content": query},))
    messages: list[Mapping[str, Any]] = []
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    if caching:
        last = {"type": "text", "text": messages[-1]["content"], "cache_control": head["cache_control"]}
        messages[-1] = {"role": "assistant", "content": [last]}
    messages.append({"role": "user", "content": f"{passages}\n\nQuestion: {query}"})
    return Prompt(system=(head,), messages=tuple(messages))


def completion_prompt(query: str, context: Sequence[Hit]) -> str:
    """A plain completion prompt for a base model (no chat template): passages, question, "Answer:"."""
    passages = "\n\n".join(f"[{i}] {hit.chunk.text.strip()}" for i, hit in enumerate(context, 1))
    return (
        "Answer the question using only the numbered passages, and cite them like [1].\n\n"
        f"Passages:\n{passages}\n\nQuestion: {query.strip()}\nAnswer:"
    )


def parse_citations(text: str, context: Sequence[Hit]) -> tuple[str, ...]:
    """Chunk ids cited in `text` as "[n]" or "[n, m]", in order of first citation.

    Numbers outside 1..len(context) cite nothing and are dropped.
    """
    ids: list[str] = []
    for group in _CITATION_GROUP.findall(text):
        for number in re.split(r"[,;]", group):
            n = int(number)
            if 1 <= n <= len(context):
                ids.append(context[n - 1].chunk.id)
    return tuple(dict.fromkeys(ids))


def cited_passages(citations: Sequence[str], context: Sequence[Hit]) -> tuple[tuple[int, Hit | None], ...]:
    """Each cited chunk with the passage number the answer's markers use for it (its place in `context`).

    So a list of citations shows "[3]" for the passage the text cites as [3]; a cited id that is
    not in the context comes with the number 0 and no hit.
    """
    numbers = {hit.chunk.id: n for n, hit in enumerate(context, 1)}
    return tuple((numbers.get(cid, 0), context[numbers[cid] - 1] if cid in numbers else None) for cid in citations)
