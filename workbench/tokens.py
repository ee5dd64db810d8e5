"""Claude token counts: offline estimates from the legacy Claude tokenizer, and the API's count.

Token counts come from the Anthropic API's token counter when `ANTHROPIC_API_KEY` is set, else
from an offline estimate (the legacy Claude tokenizer times a calibration factor), always
labelled as such. `claude_tokenizer` is the one loader of that tokenizer (chunking counts with
it too).

Calibration: `CALIBRATION_FACTOR` is 1.0, i.e. no correction. It is an assumption, not a
measurement: Anthropic states the legacy (Claude 2) tokenizer is not exact for Claude 3 and
later, and no real Claude count can be taken offline, so its error is unknown. With a key,
`calibrate(texts, [count_tokens(t).tokens for t in texts])` measures the factor and its error;
set `WORKBENCH_TOKEN_CALIBRATION` to the measured factor to use it everywhere.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .io import DATA_DIR

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "claude_tokenizer",
    "estimate_tokens",
    "calibration_factor",
    "TokenCount",
    "count_tokens",
    "Calibration",
    "calibrate",
    "CALIBRATION_FACTOR",
    "CLAUDE_TOKENIZER_PATH",
    "TOKENS_PER_UNIT",
]

log = logging.getLogger(__name__)

CLAUDE_TOKENIZER_PATH = DATA_DIR / "claude_tokenizer" / "tokenizer.json"
CALIBRATION_FACTOR = 1.0  # assumed, unverified: see the module docstring

# Legacy-Claude tokens per unit of each chunking tokenizer, measured on the bundled chunking
# corpora (chatlogs, state_of_the_union, wikitexts; 206,423 characters): 45,773 legacy tokens
# against 43,913 all-MiniLM-L6-v2 WordPiece tokens (per-corpus 0.96-1.09) and 36,842
# whitespace words (per-corpus 1.17-1.36). `benchmarks/cost_model.py` recomputes them.
TOKENS_PER_UNIT: Mapping[str, float] = {"claude": 1.0, "embedding": 1.04, "whitespace": 1.24}


@functools.cache
def claude_tokenizer() -> tokenizers.Tokenizer:
    """The legacy Claude tokenizer (data/claude_tokenizer), loaded once per process."""
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(CLAUDE_TOKENIZER_PATH))


@functools.lru_cache(maxsize=65_536)  # studies price the same chunk texts under many settings
def _legacy_count(text: str) -> int:
    return len(claude_tokenizer().encode(text, add_special_tokens=False).ids) if text else 0


def calibration_factor() -> float:
    """The factor applied to legacy-tokenizer counts: `$WORKBENCH_TOKEN_CALIBRATION` or 1.0.

    Raises:
        ValueError: the variable is not a positive number.
    """
    raw = os.environ.get("WORKBENCH_TOKEN_CALIBRATION")
    if raw is None:
        return CALIBRATION_FACTOR
    try:
        factor = float(raw)
    except ValueError:
        factor = -1.0
    if not factor > 0 or math.isinf(factor):
        raise ValueError(f"WORKBENCH_TOKEN_CALIBRATION={raw!r} must be a positive number such as 1.1")
    return factor


def estimate_tokens(text: str) -> int:
    """Offline estimate of the Claude tokens in `text`: legacy tokenizer x calibration factor."""
    return round(_legacy_count(text) * calibration_factor())


@dataclass(frozen=True, kw_only=True)
class TokenCount:
    """A token count and whether the API counted it (True) or it is an offline estimate."""

    tokens: int
    counted: bool


def count_tokens(text: str, *, model: str = "claude-haiku-4-5") -> TokenCount:
    """Tokens of `text` sent as one user message: the API's count with a key, else an estimate.

    With `ANTHROPIC_API_KEY` set (and `ANTHROPIC_BASE_URL` if any) the Messages token counter
    answers; its count includes the few tokens of message framing, which are billed too. When
    the call fails the offline estimate is returned, labelled `counted=False`.
    """
    if not text:
        return TokenCount(tokens=0, counted=False)
    if os.environ.get("ANTHROPIC_API_KEY"):
        import anthropic

        try:
            tokens = _api_count(text, model, os.environ.get("ANTHROPIC_BASE_URL", ""))
            return TokenCount(tokens=tokens, counted=True)
        except anthropic.AnthropicError as exc:
            log.warning("token counting through the API failed (%s); using the offline estimate",
                        type(exc).__name__)
    return TokenCount(tokens=estimate_tokens(text), counted=False)


@functools.lru_cache(maxsize=256)
def _api_count(text: str, model: str, base_url: str) -> int:
    """The API's count, remembered per process (a cost sweep asks for the same texts again)."""
    import anthropic  # a core dependency; only reached with ANTHROPIC_API_KEY set

    client = anthropic.Anthropic(
        api_key=os.environ["ANTHROPIC_API_KEY"], base_url=base_url or None, timeout=60.0, max_retries=2
    )
    result = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": text}])
    return int(result.input_tokens)


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """A measured calibration: the factor, and relative errors of calibrated estimates."""

    factor: float
    mean_abs_error: float
    max_abs_error: float
    n: int


def calibrate(texts: Sequence[str], counts: Sequence[int]) -> Calibration:
    """Fit the factor that maps legacy-tokenizer counts onto real counts (ratio of sums).

    Args:
        texts: sample texts, ideally like the ones being priced.
        counts: the real token count of each text (e.g. `count_tokens(t).tokens` with a key).

    Raises:
        ValueError: lengths differ, or no text has any tokens.
    """
    if len(texts) != len(counts):
        raise ValueError(f"{len(texts)} texts but {len(counts)} counts; give one count per text")
    legacy = [_legacy_count(t) for t in texts]
    pairs = [(est, real) for est, real in zip(legacy, counts) if est > 0 and real > 0]
    if not pairs:
        raise ValueError("calibrate needs at least one non-empty text with a positive count")
    factor = sum(r for _, r in pairs) / sum(e for e, _ in pairs)
    errors = [abs(e * factor - r) / r for e, r in pairs]
    return Calibration(factor=factor, mean_abs_error=sum(errors) / len(errors), max_abs_error=max(errors),
                       n=len(pairs))
